/* chars.c — the character class table, built at compile time from the RFC grammars. */
#include "http/chars.h"

#define T FG_C_TCHAR
#define V FG_C_VALUE
#define G FG_C_TARGET
#define H FG_C_HOST
#define X FG_C_HEX
#define U FG_C_UNRESERVED

/* ALPHA and DIGIT are everything; the punctuation entries follow the ABNF:
 *   tchar      = "!" "#" "$" "%" "&" "'" "*" "+" "-" "." "^" "_" "`" "|" "~" DIGIT ALPHA
 *   unreserved = ALPHA DIGIT "-" "." "_" "~"
 *   sub-delims = "!" "$" "&" "'" "(" ")" "*" "+" "," ";" "="
 *   pchar      = unreserved / pct-encoded / sub-delims / ":" / "@"   (+ "/" "?" in targets) */
#define ALNUM (T | V | G | H | U)
const uint8_t fg_http_char_class[256] = {
    ['\t'] = V,
    [' '] = V,
    ['!'] = T | V | G | H,
    ['"'] = V,
    ['#'] = T | V,
    ['$'] = T | V | G | H,
    ['%'] = T | V | G | H,
    ['&'] = T | V | G | H,
    ['\''] = T | V | G | H,
    ['('] = V | G | H,
    [')'] = V | G | H,
    ['*'] = T | V | G | H,
    ['+'] = T | V | G | H,
    [','] = V | G | H,
    ['-'] = T | V | G | H | U,
    ['.'] = T | V | G | H | U,
    ['/'] = V | G,
    ['0'] = ALNUM | X, ['1'] = ALNUM | X, ['2'] = ALNUM | X, ['3'] = ALNUM | X,
    ['4'] = ALNUM | X, ['5'] = ALNUM | X, ['6'] = ALNUM | X, ['7'] = ALNUM | X,
    ['8'] = ALNUM | X, ['9'] = ALNUM | X,
    [':'] = V | G | H,
    [';'] = V | G | H,
    ['<'] = V,
    ['='] = V | G | H,
    ['>'] = V,
    ['?'] = V | G,
    ['@'] = V | G,
    ['A'] = ALNUM | X, ['B'] = ALNUM | X, ['C'] = ALNUM | X, ['D'] = ALNUM | X,
    ['E'] = ALNUM | X, ['F'] = ALNUM | X, ['G'] = ALNUM, ['H'] = ALNUM, ['I'] = ALNUM,
    ['J'] = ALNUM, ['K'] = ALNUM, ['L'] = ALNUM, ['M'] = ALNUM, ['N'] = ALNUM, ['O'] = ALNUM,
    ['P'] = ALNUM, ['Q'] = ALNUM, ['R'] = ALNUM, ['S'] = ALNUM, ['T'] = ALNUM, ['U'] = ALNUM,
    ['V'] = ALNUM, ['W'] = ALNUM, ['X'] = ALNUM, ['Y'] = ALNUM, ['Z'] = ALNUM,
    ['['] = V | H,
    ['\\'] = V,
    [']'] = V | H,
    ['^'] = T | V,
    ['_'] = T | V | G | H | U,
    ['`'] = T | V,
    ['a'] = ALNUM | X, ['b'] = ALNUM | X, ['c'] = ALNUM | X, ['d'] = ALNUM | X,
    ['e'] = ALNUM | X, ['f'] = ALNUM | X, ['g'] = ALNUM, ['h'] = ALNUM, ['i'] = ALNUM,
    ['j'] = ALNUM, ['k'] = ALNUM, ['l'] = ALNUM, ['m'] = ALNUM, ['n'] = ALNUM, ['o'] = ALNUM,
    ['p'] = ALNUM, ['q'] = ALNUM, ['r'] = ALNUM, ['s'] = ALNUM, ['t'] = ALNUM, ['u'] = ALNUM,
    ['v'] = ALNUM, ['w'] = ALNUM, ['x'] = ALNUM, ['y'] = ALNUM, ['z'] = ALNUM,
    ['{'] = V,
    ['|'] = T | V,
    ['}'] = V,
    ['~'] = T | V | G | H | U,
    /* obs-text: allowed in field values only */
    [0x80] = V, [0x81] = V, [0x82] = V, [0x83] = V, [0x84] = V, [0x85] = V, [0x86] = V,
    [0x87] = V, [0x88] = V, [0x89] = V, [0x8a] = V, [0x8b] = V, [0x8c] = V, [0x8d] = V,
    [0x8e] = V, [0x8f] = V, [0x90] = V, [0x91] = V, [0x92] = V, [0x93] = V, [0x94] = V,
    [0x95] = V, [0x96] = V, [0x97] = V, [0x98] = V, [0x99] = V, [0x9a] = V, [0x9b] = V,
    [0x9c] = V, [0x9d] = V, [0x9e] = V, [0x9f] = V, [0xa0] = V, [0xa1] = V, [0xa2] = V,
    [0xa3] = V, [0xa4] = V, [0xa5] = V, [0xa6] = V, [0xa7] = V, [0xa8] = V, [0xa9] = V,
    [0xaa] = V, [0xab] = V, [0xac] = V, [0xad] = V, [0xae] = V, [0xaf] = V, [0xb0] = V,
    [0xb1] = V, [0xb2] = V, [0xb3] = V, [0xb4] = V, [0xb5] = V, [0xb6] = V, [0xb7] = V,
    [0xb8] = V, [0xb9] = V, [0xba] = V, [0xbb] = V, [0xbc] = V, [0xbd] = V, [0xbe] = V,
    [0xbf] = V, [0xc0] = V, [0xc1] = V, [0xc2] = V, [0xc3] = V, [0xc4] = V, [0xc5] = V,
    [0xc6] = V, [0xc7] = V, [0xc8] = V, [0xc9] = V, [0xca] = V, [0xcb] = V, [0xcc] = V,
    [0xcd] = V, [0xce] = V, [0xcf] = V, [0xd0] = V, [0xd1] = V, [0xd2] = V, [0xd3] = V,
    [0xd4] = V, [0xd5] = V, [0xd6] = V, [0xd7] = V, [0xd8] = V, [0xd9] = V, [0xda] = V,
    [0xdb] = V, [0xdc] = V, [0xdd] = V, [0xde] = V, [0xdf] = V, [0xe0] = V, [0xe1] = V,
    [0xe2] = V, [0xe3] = V, [0xe4] = V, [0xe5] = V, [0xe6] = V, [0xe7] = V, [0xe8] = V,
    [0xe9] = V, [0xea] = V, [0xeb] = V, [0xec] = V, [0xed] = V, [0xee] = V, [0xef] = V,
    [0xf0] = V, [0xf1] = V, [0xf2] = V, [0xf3] = V, [0xf4] = V, [0xf5] = V, [0xf6] = V,
    [0xf7] = V, [0xf8] = V, [0xf9] = V, [0xfa] = V, [0xfb] = V, [0xfc] = V, [0xfd] = V,
    [0xfe] = V, [0xff] = V,
};
