/* What the C guests share: the whole payload from stdin, and a clean exit
 * with a message on stderr when something fails. A wasque job's payload is
 * the program's stdin, its stdout is the result, stderr is its log and the
 * exit status tells success (0) from failure. */
#ifndef WASQUE_C_COMMON_H
#define WASQUE_C_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Reads all of stdin into a malloc'd buffer; its length goes to *len.
 * Exits with status 1 and a message on stderr if memory runs out or the
 * read fails (the job's memory cap is the usual reason). */
static unsigned char *read_payload(size_t *len) {
    size_t cap = 64 * 1024, n = 0;
    unsigned char *buf = malloc(cap);
    if (!buf) {
        fputs("out of memory\n", stderr);
        exit(1);
    }
    for (;;) {
        if (n == cap) {
            unsigned char *bigger = realloc(buf, cap * 2);
            if (!bigger) {
                fputs("out of memory\n", stderr);
                exit(1);
            }
            buf = bigger;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n, stdin);
        n += got;
        if (got == 0) {
            if (ferror(stdin)) {
                perror("reading stdin");
                exit(1);
            }
            break;
        }
    }
    *len = n;
    return buf;
}

#endif
