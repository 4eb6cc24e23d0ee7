/* secret.c — reading a file that holds a secret (a password, signing keys): refused when
 * anyone but its owner could read it, or when its owner is someone else. */
#include "core/core.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

ssize_t fg_secret_file_read(const char *what, const char *path, char *buf, size_t cap, char *err,
                            size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        snprintf(err, errlen, "%s %s: cannot open: %s", what, path, strerror(errno));
        return -1;
    }
    struct stat st;
    ssize_t n = -1;
    if (fstat(fd, &st) != 0) {
        snprintf(err, errlen, "%s %s: cannot stat: %s", what, path, strerror(errno));
    } else if (!S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s %s: not a regular file", what, path);
    } else if ((st.st_mode & 077) != 0) {
        snprintf(err, errlen,
                 "%s %s: group or others have access (mode %04o); it must be readable by its "
                 "owner only (chmod 600)",
                 what, path, (unsigned)(st.st_mode & 07777));
    } else if (st.st_uid != 0 && st.st_uid != geteuid()) {
        snprintf(err, errlen,
                 "%s %s: owned by uid %u; it must belong to root or to the user flashgate runs "
                 "as",
                 what, path, (unsigned)st.st_uid);
    } else {
        n = read(fd, buf, cap);
        if (n < 0)
            snprintf(err, errlen, "%s %s: cannot read: %s", what, path, strerror(errno));
    }
    close(fd);
    return n;
}
