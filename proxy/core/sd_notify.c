/*
 * sd_notify.c — tell systemd about our state (READY=1, RELOADING=1, STOPPING=1,
 * STATUS=...) without linking libsystemd. The protocol is one datagram of
 * newline-separated VAR=value lines sent to the AF_UNIX socket named by $NOTIFY_SOCKET;
 * a name starting with '@' is a socket in the abstract namespace (leading NUL byte).
 * systemd attributes the datagram to our PID through the credentials the kernel
 * attaches, so nothing else has to be sent.
 */
#include "core/core.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

/* systemd drains its notify socket quickly; the bound only matters when it is wedged,
 * and then the main thread must not hang on a status message. */
#define SD_NOTIFY_SEND_TIMEOUT_MS 2000

/* Fill *sun from a $NOTIFY_SOCKET value; false if it is not a unix socket name we can
 * use (systemd 254+ may also hand out "vsock:" addresses, which a local service never
 * receives from a local manager). */
static bool notify_addr(const char *name, struct sockaddr_un *sun, socklen_t *len)
{
    size_t n = strlen(name);
    memset(sun, 0, sizeof(*sun));
    sun->sun_family = AF_UNIX;
    if (name[0] == '@') {
        /* Abstract: the name is every byte after the NUL, with no terminator, so the
         * address length must say exactly where it ends. */
        if (n < 2 || n > sizeof(sun->sun_path))
            return false;
        memcpy(sun->sun_path + 1, name + 1, n - 1);
        *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
        return true;
    }
    if (name[0] != '/' || n >= sizeof(sun->sun_path))
        return false;
    memcpy(sun->sun_path, name, n);
    *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
    return true;
}

bool fg_sd_notify(const char *state)
{
    if (state == NULL) {
        errno = EINVAL;
        return false;
    }
    const char *name = getenv("NOTIFY_SOCKET");
    if (name == NULL || name[0] == '\0')
        return true; /* not started by systemd with Type=notify: nothing to tell */

    struct sockaddr_un sun;
    socklen_t sunlen;
    if (!notify_addr(name, &sun, &sunlen)) {
        errno = EAFNOSUPPORT;
        return false;
    }
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    struct timeval tv = {.tv_sec = SD_NOTIFY_SEND_TIMEOUT_MS / 1000,
                         .tv_usec = (SD_NOTIFY_SEND_TIMEOUT_MS % 1000) * 1000};
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));

    size_t len = strlen(state);
    ssize_t sent;
    do {
        sent = sendto(fd, state, len, MSG_NOSIGNAL, (const struct sockaddr *)&sun, sunlen);
    } while (sent < 0 && errno == EINTR);
    int saved = errno;
    close(fd);
    errno = saved;
    /* A datagram goes whole or not at all; anything else is a failure to report. */
    return sent >= 0 && (size_t)sent == len;
}
