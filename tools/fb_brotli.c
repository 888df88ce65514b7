/* SPDX-License-Identifier: MIT */
/*
 * fb_brotli.c - `fb_brotli IN OUT`: IN compressed with Brotli at its best quality into OUT.
 *
 * The build's stand-in for the `brotli` command (Debian package brotli) when that is missing
 * (cmake/FbWebAssets.cmake): libbrotlienc comes with libcurl's development package, so a build
 * machine nearly always has it even without the command. Output is what `brotli -q 11` gives.
 */
#include <brotli/encode.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: fb_brotli IN OUT\n");
        return 2;
    }
    FILE *in = fopen(argv[1], "rb");
    if (!in) {
        perror(argv[1]);
        return 1;
    }
    size_t cap = 1 << 16, len = 0;
    unsigned char *data = malloc(cap);
    size_t n;
    while (data && (n = fread(data + len, 1, cap - len, in)) > 0) {
        len += n;
        if (len == cap) {
            unsigned char *bigger = realloc(data, cap * 2);
            if (!bigger) {
                free(data);
                data = NULL;
                break;
            }
            data = bigger;
            cap *= 2;
        }
    }
    int bad = !data || ferror(in);
    fclose(in);
    if (bad) {
        fprintf(stderr, "fb_brotli: cannot read %s\n", argv[1]);
        free(data);
        return 1;
    }
    /* The bound is 0 for an empty input, which still compresses to a byte or two. */
    size_t out_len = BrotliEncoderMaxCompressedSize(len) + 16;
    unsigned char *out = malloc(out_len);
    if (!out || !BrotliEncoderCompress(BROTLI_MAX_QUALITY, BROTLI_DEFAULT_WINDOW,
                                       BROTLI_MODE_GENERIC, len, data, &out_len, out)) {
        fprintf(stderr, "fb_brotli: compression of %s failed\n", argv[1]);
        free(data);
        free(out);
        return 1;
    }
    free(data);
    FILE *o = fopen(argv[2], "wb");
    if (!o || fwrite(out, 1, out_len, o) != out_len || fclose(o) != 0) {
        perror(argv[2]);
        free(out);
        return 1;
    }
    free(out);
    return 0;
}
