#!/bin/sh
# make check: replay the fuzz corpus and every kept crasher through the codec.
exec ./tests/fuzz/replay "${srcdir:-.}/tests/fuzz/corpus" "${srcdir:-.}/tests/fuzz/regressions"
