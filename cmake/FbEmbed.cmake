# SPDX-License-Identifier: MIT
# Turns a text file into a C translation unit defining `const char SYMBOL[]` (NUL-terminated)
# and `const unsigned long SYMBOL_len`. Usage: cmake -DIN=... -DOUT=... -DSYMBOL=... -P FbEmbed.cmake
file(READ ${IN} hex HEX)
string(LENGTH "${hex}" hexlen)
math(EXPR len "${hexlen} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," body "${hex}")
string(REGEX REPLACE "(0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,)" "\\1\n" body "${body}")
file(WRITE ${OUT} "/* Generated from ${IN} by cmake/FbEmbed.cmake. Do not edit. */\n"
     "const char ${SYMBOL}[] = {\n${body}0x00};\n"
     "const unsigned long ${SYMBOL}_len = ${len};\n")
