/*
 * test_sd_notify.c — fg_sd_notify against a real AF_UNIX datagram socket standing in
 * for systemd: the exact bytes arrive in one datagram, from our own PID (what systemd
 * checks against MainPID), on a filesystem path and on an abstract ('@') name; nothing
 * is sent and true is returned without $NOTIFY_SOCKET; bad names and a missing peer
 * are reported as failures.
 */
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/core.h"

struct listener {
    int fd;
    char env[128];  /* what NOTIFY_SOCKET is set to */
    char path[108]; /* filesystem path to unlink, or "" for an abstract name */
    char dir[64];
};

/* A receiving socket that records the sender's credentials, as systemd's does. */
static int listener_socket(void)
{
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    int one = 1;
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)), 0);
    return fd;
}

static void listen_path(struct listener *l)
{
    memset(l, 0, sizeof(*l));
    snprintf(l->dir, sizeof(l->dir), "/tmp/fg-sdnotify-XXXXXX");
    assert_non_null(mkdtemp(l->dir));
    snprintf(l->path, sizeof(l->path), "%s/notify", l->dir);
    snprintf(l->env, sizeof(l->env), "%s", l->path);
    l->fd = listener_socket();
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", l->path);
    assert_int_equal(bind(l->fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
}

static void listen_abstract(struct listener *l)
{
    static unsigned seq;
    memset(l, 0, sizeof(*l));
    char name[64];
    int n = snprintf(name, sizeof(name), "flashgate-test-sdnotify-%ld-%u", (long)getpid(), seq++);
    snprintf(l->env, sizeof(l->env), "@%s", name);
    l->fd = listener_socket();
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    memcpy(sun.sun_path + 1, name, (size_t)n); /* leading NUL: abstract namespace */
    socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
    assert_int_equal(bind(l->fd, (struct sockaddr *)&sun, len), 0);
}

static void listener_close(struct listener *l)
{
    close(l->fd);
    if (l->path[0] != '\0') {
        unlink(l->path);
        rmdir(l->dir);
    }
    unsetenv("NOTIFY_SOCKET");
}

/* Receive one datagram within timeout_ms; returns its length (-1 if none came) and
 * the sender's PID in *pid. */
static ssize_t receive(int fd, char *buf, size_t cap, int timeout_ms, pid_t *pid)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, timeout_ms) != 1)
        return -1;
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(struct ucred))];
    } control;
    struct iovec iov = {.iov_base = buf, .iov_len = cap};
    struct msghdr msg = {.msg_iov = &iov,
                         .msg_iovlen = 1,
                         .msg_control = control.buf,
                         .msg_controllen = sizeof(control.buf)};
    ssize_t n = recvmsg(fd, &msg, MSG_DONTWAIT);
    *pid = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS) {
            struct ucred cred;
            memcpy(&cred, CMSG_DATA(c), sizeof(cred));
            *pid = cred.pid;
        }
    }
    assert_int_equal(msg.msg_flags & MSG_TRUNC, 0);
    return n;
}

static void expect_datagram(const struct listener *l, const char *want)
{
    char buf[512];
    pid_t pid;
    ssize_t n = receive(l->fd, buf, sizeof(buf), 2000, &pid);
    assert_int_equal(n, (ssize_t)strlen(want));
    assert_memory_equal(buf, want, (size_t)n);
    assert_int_equal(pid, getpid());
}

static void expect_nothing(const struct listener *l)
{
    char buf[64];
    pid_t pid;
    assert_int_equal(receive(l->fd, buf, sizeof(buf), 50, &pid), -1);
}

static void test_path_socket(void **state)
{
    (void)state;
    struct listener l;
    listen_path(&l);
    assert_int_equal(setenv("NOTIFY_SOCKET", l.env, 1), 0);
    assert_true(fg_sd_notify("READY=1"));
    expect_datagram(&l, "READY=1");
    /* Each call is its own datagram, in order. */
    assert_true(fg_sd_notify("RELOADING=1"));
    assert_true(fg_sd_notify("STOPPING=1"));
    expect_datagram(&l, "RELOADING=1");
    expect_datagram(&l, "STOPPING=1");
    expect_nothing(&l);
    listener_close(&l);
}

static void test_abstract_socket(void **state)
{
    (void)state;
    struct listener l;
    listen_abstract(&l);
    assert_int_equal(setenv("NOTIFY_SOCKET", l.env, 1), 0);
    assert_true(fg_sd_notify("READY=1"));
    expect_datagram(&l, "READY=1");
    listener_close(&l);
}

static void test_abstract_name_is_exact(void **state)
{
    /* The abstract name has no terminator: a sender that counted a trailing NUL (or
     * dropped the last byte) would address a different socket, and the datagram would
     * be lost or refused. Bind the name one byte longer and one byte shorter too: only
     * the exact one may receive. */
    (void)state;
    struct listener l;
    listen_abstract(&l);
    char longer[140], shorter[140];
    snprintf(longer, sizeof(longer), "%sX", l.env);
    snprintf(shorter, sizeof(shorter), "%.*s", (int)strlen(l.env) - 1, l.env);

    int lfd = listener_socket(), sfd = listener_socket();
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    size_t ln = strlen(longer) - 1, sn = strlen(shorter) - 1;
    memcpy(sun.sun_path + 1, longer + 1, ln);
    assert_int_equal(bind(lfd, (struct sockaddr *)&sun,
                          (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + ln)),
                     0);
    memset(sun.sun_path, 0, sizeof(sun.sun_path));
    memcpy(sun.sun_path + 1, shorter + 1, sn);
    assert_int_equal(bind(sfd, (struct sockaddr *)&sun,
                          (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + sn)),
                     0);

    assert_int_equal(setenv("NOTIFY_SOCKET", l.env, 1), 0);
    assert_true(fg_sd_notify("STATUS=exact"));
    expect_datagram(&l, "STATUS=exact");
    struct listener other = {.fd = lfd};
    expect_nothing(&other);
    other.fd = sfd;
    expect_nothing(&other);
    close(lfd);
    close(sfd);
    listener_close(&l);
}

static void test_multiline_state(void **state)
{
    /* Several assignments in one datagram is how systemd wants READY with a STATUS. */
    (void)state;
    struct listener l;
    listen_path(&l);
    assert_int_equal(setenv("NOTIFY_SOCKET", l.env, 1), 0);
    const char *msg = "READY=1\nSTATUS=generation 1, 4 workers\nMAINPID=1234";
    assert_true(fg_sd_notify(msg));
    expect_datagram(&l, msg);
    listener_close(&l);
}

static void test_unset_is_noop(void **state)
{
    (void)state;
    struct listener l;
    listen_path(&l);
    unsetenv("NOTIFY_SOCKET");
    assert_true(fg_sd_notify("READY=1"));
    assert_int_equal(setenv("NOTIFY_SOCKET", "", 1), 0);
    assert_true(fg_sd_notify("READY=1"));
    expect_nothing(&l);
    listener_close(&l);
}

static void test_failures_reported(void **state)
{
    (void)state;
    /* No one listening there. */
    assert_int_equal(setenv("NOTIFY_SOCKET", "/nonexistent/flashgate/notify", 1), 0);
    assert_false(fg_sd_notify("READY=1"));
    /* Not a path and not an abstract name. */
    assert_int_equal(setenv("NOTIFY_SOCKET", "relative/notify", 1), 0);
    assert_false(fg_sd_notify("READY=1"));
    assert_int_equal(setenv("NOTIFY_SOCKET", "@", 1), 0);
    assert_false(fg_sd_notify("READY=1"));
    /* Longer than sun_path can hold: refused, not truncated to some other socket. */
    char big[200];
    memset(big, 'a', sizeof(big) - 1);
    big[0] = '/';
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(setenv("NOTIFY_SOCKET", big, 1), 0);
    assert_false(fg_sd_notify("READY=1"));
    big[0] = '@';
    assert_int_equal(setenv("NOTIFY_SOCKET", big, 1), 0);
    assert_false(fg_sd_notify("READY=1"));
    /* NULL state. */
    assert_false(fg_sd_notify(NULL));
    unsetenv("NOTIFY_SOCKET");
}

static void test_sun_path_edges(void **state)
{
    /* The longest usable names: a 107-byte path (plus its NUL) and a 107-byte abstract
     * name fill sun_path exactly. */
    (void)state;
    struct listener l;
    memset(&l, 0, sizeof(l));
    l.fd = listener_socket();
    char name[109];
    memset(name, 'z', 108);
    name[0] = '@';
    name[108] = '\0';
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    memcpy(sun.sun_path + 1, name + 1, 107);
    assert_int_equal(bind(l.fd, (struct sockaddr *)&sun, (socklen_t)sizeof(sun)), 0);
    assert_int_equal(setenv("NOTIFY_SOCKET", name, 1), 0);
    assert_true(fg_sd_notify("READY=1"));
    expect_datagram(&l, "READY=1");
    listener_close(&l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_path_socket),
        cmocka_unit_test(test_abstract_socket),
        cmocka_unit_test(test_abstract_name_is_exact),
        cmocka_unit_test(test_multiline_state),
        cmocka_unit_test(test_unset_is_noop),
        cmocka_unit_test(test_failures_reported),
        cmocka_unit_test(test_sun_path_edges),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
