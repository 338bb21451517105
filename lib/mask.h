/* WebSocket payload masking (RFC 6455 section 5.3), internal. */
#ifndef WSK_MASK_H
#define WSK_MASK_H

#include <stddef.h>
#include <stdint.h>

/* XORs p[0..n) in place with key, starting at key byte `offset & 3`; returns the offset for the
 * next call ((offset + n) & 3) so a payload split across reads unmasks in pieces.  Masking and
 * unmasking are the same operation.  p may have any alignment; n may be 0. */
size_t wsk_mask(uint8_t *p, size_t n, const uint8_t key[4], size_t offset);

/* wsk_mask, and *ascii = 1 when every byte it left in p[0..n) is below 0x80: a text payload's
 * ASCII run proven in the unmasking pass, which a UTF-8 validator between characters then need
 * not read again (0 says only that some byte is not ASCII). */
size_t wsk_unmask_ascii(uint8_t *p, size_t n, const uint8_t key[4], size_t offset, int *ascii);

/* The same from src to dst in one pass (a client's send: copy and mask at once).  dst and src
 * are the same or do not overlap. */
size_t wsk_mask_copy(uint8_t *dst, const uint8_t *src, size_t n, const uint8_t key[4],
                     size_t offset);

#endif
