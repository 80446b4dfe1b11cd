#include "CHiredisShims.h"

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
