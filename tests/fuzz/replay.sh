#!/bin/sh
# make check: replay the fuzz corpora and every kept crasher through all codec targets.
exec ./tests/fuzz/replay "${srcdir:-.}/tests/fuzz"
