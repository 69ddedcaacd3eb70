# Writes the bytes of IN as a C array `tse_descriptor_set` to OUT.
file(READ ${IN} hex HEX)
string(LENGTH "${hex}" n)
math(EXPR len "${n} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," body "${hex}")
string(REGEX REPLACE "((0x..,){16})" "\\1\n" body "${body}")
file(WRITE ${OUT} "/* Generated from ${IN}; do not edit. */\n#include <stddef.h>\n"
  "const unsigned char tse_descriptor_set[] = {\n${body}\n};\n"
  "const size_t tse_descriptor_set_len = ${len};\n")
