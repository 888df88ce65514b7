/* SPDX-License-Identifier: MIT */
/*
 * fuzz_config.c - libFuzzer target for the configuration loader (daemon/io/config.c).
 *
 * Any byte string is handed to fb_config_parse() as a YAML file. Besides the sanitizers' own
 * checks, it enforces the loader's contract: a config is returned exactly when no error is
 * reported, and every error line starts with "fuzz.yaml:LINE:COL: " or names the embedded
 * default, so text from the input can never forge an extra line.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "frichebot/buf.h"
#include "io/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* True when `line` (up to its newline) starts with "NAME:DIGITS:DIGITS: ". */
static int well_formed(const char *line, const char *name)
{
    size_t n = strlen(name);
    if (strncmp(line, name, n) != 0 || line[n] != ':')
        return 0;
    const char *p = line + n + 1;
    for (int field = 0; field < 2; field++) {
        if (*p < '1' || *p > '9')
            return 0;
        while (*p >= '0' && *p <= '9')
            p++;
        if (*p++ != ':')
            return 0;
    }
    return *p == ' ';
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fb_buf_t errors;
    fb_buf_init(&errors, 1u << 16);
    fb_config_t *cfg = fb_config_parse("fuzz.yaml", (const char *)data, size, &errors);
    if ((cfg == NULL) != (errors.len > 0))
        abort();
    for (const char *line = fb_buf_str(&errors); *line;) {
        if (!well_formed(line, "fuzz.yaml") && !well_formed(line, "(embedded default)"))
            abort();
        const char *nl = strchr(line, '\n');
        if (!nl)
            abort(); /* every line ends with a newline */
        line = nl + 1;
    }
    fb_config_free(cfg);
    fb_buf_free(&errors);
    return 0;
}
