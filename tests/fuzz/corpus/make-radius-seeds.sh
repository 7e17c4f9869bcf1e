#!/bin/sh
# Writes the seed inputs of fuzz_radius (tests/fuzz/fuzz_radius.c explains
# the format) into fuzz_radius/. Rerun after a change of the format.
#   sh tests/fuzz/corpus/make-radius-seeds.sh
set -eu
cd "$(dirname "$0")/fuzz_radius"
rm -f ./*

# f TEXT: one field, its length byte first (TEXT in printf's escapes).
f() { printf "$1" >.f; printf "\\$(printf '%03o' "$(wc -c <.f)")"; cat .f; }
# seed NAME FLAGS USER PASSWORD STATE SERVICE PASSWORD2
seed() {
	{ printf "$2"; f "$3"; f "$4"; f "$5"; f "$6"; f "$7"; } >"$1"
}
seed login-code '\020' R1 '' '' '' 123456
seed login-wrong-password '\000' R1 nope '' '' ''
seed unknown-contract '\000' nobody nope '' '' 123456
seed append '\021' R1 123456 '' '' ''
seed append-short '\001' R1 12 '' '' ''
seed foreign-state '\002' R1 123456 '\002\021\042\063\104\125\146\167' '' ''
seed empty-state '\002' R1 123456 '' '' ''
seed nas-transfer '\014' R1 123456 '' ib-transfer ''
seed nas-mobile '\034' R1 '' '' ib-mobile ''
seed nas-unmapped '\014' R1 pw '' no-such-service ''
seed registration '\030' R2 '' '' '' R-T2
seed nul-in-user '\000' 'R1\000x' pw '' '' ''
seed nul-in-password '\000' R1 'pw\000x' '' '' ''
seed full-width '\020' R1 '' '' '' '\357\274\221\357\274\222\357\274\223\357\274\224\357\274\225\357\274\226'
rm -f .f
