#include "CHiredisShims.h"

#ifdef __linux__
#include <linux/tcp.h>
#include <netinet/in.h>
#include <sys/socket.h>
#endif

const char *CHiredisShims_readerGetError(const redisReader *reader) {
    if (reader == NULL || reader->err == 0) {
        return NULL;
    }
    return reader->errstr;
}

redisReader *CHiredisShims_readerCreate(size_t maxbuf) {
    redisReader *reader = redisReaderCreate();
    if (reader != NULL && maxbuf > 0) {
        reader->maxbuf = maxbuf;
    }
    return reader;
}

int CHiredisShims_tcpBytesReceived(int fd, uint64_t *received) {
#ifdef __linux__
    struct tcp_info info;
    socklen_t length = sizeof(info);
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &length) != 0 ||
        length < offsetof(struct tcp_info, tcpi_bytes_received) + sizeof(info.tcpi_bytes_received)) {
        return -1;
    }
    *received = info.tcpi_bytes_received;
    return 0;
#else
    (void)fd;
    (void)received;
    return -1;
#endif
}
