#ifndef CHIREDIS_SHIMS_H
#define CHIREDIS_SHIMS_H

#include <stddef.h>
#include <stdint.h>
#include <hiredis/hiredis.h>

/// The reader's error text, or NULL when it has none.
/// Why a shim: `errstr` is a fixed char array (a tuple in Swift) read through the `redisReaderGetError` macro.
const char *CHiredisShims_readerGetError(const redisReader *reader);

/// Creates a reader that keeps at most `maxbuf` unused bytes (0 = hiredis' default).
/// Why a shim: `maxbuf` is a field that Swift can set, but keeping reader setup in C keeps it next to hiredis' own defaults.
redisReader *CHiredisShims_readerCreate(size_t maxbuf);

/// Stores in `received` the bytes TCP has accepted in order on socket `fd` since it opened (Linux' `tcpi_bytes_received`,
/// RFC 4898's tcpEStatsAppHCThruOctetsReceived); returns 0, or -1 where that is unknown (not Linux, not TCP, a closed fd).
/// Why a shim: `struct tcp_info` with that field is in <linux/tcp.h>, which clashes with glibc's <netinet/tcp.h> in Swift.
int CHiredisShims_tcpBytesReceived(int fd, uint64_t *received);

#endif
