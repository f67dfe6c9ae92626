/* Evidence for BENCHMARKS.md, not part of any build: LD_PRELOAD this into a function binary
 * and every TCP socket it opens keeps TCP_NODELAY on, even where a library turns it off
 * (hyper-util's HttpConnector, which lambda_runtime's Runtime API client uses, sets it to 0
 * after connecting). `scripts/bench lambda-streaming-nodelay` builds and uses it. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

static void force_nodelay(int fd) {
    static int (*real_setsockopt)(int, int, int, const void *, socklen_t);
    if (!real_setsockopt) real_setsockopt = dlsym(RTLD_NEXT, "setsockopt");
    int one = 1;
    real_setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

int connect(int fd, const struct sockaddr *addr, socklen_t len) {
    static int (*real_connect)(int, const struct sockaddr *, socklen_t);
    if (!real_connect) real_connect = dlsym(RTLD_NEXT, "connect");
    if (addr && (addr->sa_family == AF_INET || addr->sa_family == AF_INET6)) {
        int type = 0;
        socklen_t type_len = sizeof type;
        if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &type_len) == 0 && type == SOCK_STREAM)
            force_nodelay(fd);
    }
    return real_connect(fd, addr, len);
}

int setsockopt(int fd, int level, int name, const void *value, socklen_t len) {
    static int (*real_setsockopt)(int, int, int, const void *, socklen_t);
    if (!real_setsockopt) real_setsockopt = dlsym(RTLD_NEXT, "setsockopt");
    if (level == IPPROTO_TCP && name == TCP_NODELAY) {
        int one = 1;
        return real_setsockopt(fd, level, name, &one, sizeof one);
    }
    return real_setsockopt(fd, level, name, value, len);
}
