#!/bin/sh
# Writes the seed inputs of fuzz_state (tests/fuzz/fuzz_state.c explains
# the format; the state body is engine_state.c's version 2, which the
# harness signs as the engine writes it, version 3 or 4, under the store's
# current key version; a body saying version 1 is signed as an older
# build's version 3) into fuzz_state/. Rerun after a change of the format.
#   sh tests/fuzz/corpus/make-state-seeds.sh
set -eu
cd "$(dirname "$0")/fuzz_state"
rm -f ./*

ID='\021\042\063\104\125\146\167\210\231\252\273\314\335\356\377\001'
LIVE='\000\000\000\000\152\034\313\370' # T0 + 120, big-endian
DEAD='\000\000\000\000\152\034\313\177' # T0 - 1
NOCELLS='\000\000\000\000\000\000\000\000'
CELLS2='\003\021\000\000\000\000\000\000' # B3 (3) and B7 (17) on 10 columns
NOSTEP='\377\377\377\377\377\377\377\377' # -1
STEP='\000\000\000\000\003\211\176\100'   # T0 / 30
DRIFT0='\000\000\000\000'

# seed NAME SEL FLAGS EXPIRES ROUNDS DONE ASKED NCELLS CELLS LOGIN STEP
#      SERIAL-LENGTH+SERIAL FIELDS
# SEL = context * 4 + contract (F-OTP 0, F-CARD 1, F-REG 2, F-NONE 3;
# login 0, transaction 1, mobile 2, registration 3, unregistration 4;
# + 24: the first field is an append-mode value).
# FIELDS: answer \n password \n code \n card \n serial \n login choice.
# V: the body's version (\002, or \001 for an older build's State).
seed() {
	printf "$2$3${V:-\\002}$ID$4$5$6$7$8$9${10}$DRIFT0${11}${12}${13}" >"$1"
}
seed login-otp '\000' '\003' "$LIVE" '\001' '\001' '\002' '\000' "$NOCELLS" '\000' "$NOSTEP" '\000' ''
seed login-otp-answer '\000' '\001' "$LIVE" '\001' '\001' '\002' '\000' "$NOCELLS" '\000' "$NOSTEP" '\000' '123456'
seed login-card '\001' '\011' "$LIVE" '\001' '\001' '\004' '\002' "$CELLS2" '\000' "$NOSTEP" '\000' ''
seed login-card-done '\001' '\001' "$LIVE" '\001' '\005' '\004' '\002' "$CELLS2" '\000' "$NOSTEP" '\000' '00'
seed transaction-wrong-code '\004' '\001' "$LIVE" '\000' '\000' '\002' '\000' "$NOCELLS" '\000' "$NOSTEP" '\000' '123456'
seed registration-serial '\016' '\001' "$LIVE" '\001' '\001' '\010' '\000' "$NOCELLS" '\000' "$NOSTEP" '\000' 'F-T3'
seed registration-code '\016' '\007' "$LIVE" '\002' '\011' '\002' '\000' "$NOCELLS" '\000' "$NOSTEP" '\004F-T3' ''
seed registration-choice '\016' '\001' "$LIVE" '\003' '\013' '\020' '\000' "$NOCELLS" '\000' "$STEP" '\004F-T3' 'yes'
seed registration-card '\016' '\011' "$LIVE" '\004' '\033' '\004' '\002' "$CELLS2" '\001' "$STEP" '\004F-T3' ''
seed unregistration '\020' '\003' "$LIVE" '\001' '\001' '\002' '\000' "$NOCELLS" '\000' "$NOSTEP" '\000' ''
seed mobile-password '\010' '\001' "$LIVE" '\000' '\000' '\001' '\000' "$NOCELLS" '\000' "$NOSTEP" '\000' 'pw'
seed append-transaction '\034' '\001' "$LIVE" '\000' '\000' '\002' '\000' "$NOCELLS" '\000' "$NOSTEP" '\000' 'pw123456'
seed expired '\000' '\003' "$DEAD" '\001' '\001' '\002' '\000' "$NOCELLS" '\000' "$NOSTEP" '\000' ''
seed unknown-contract '\003' '\003' "$LIVE" '\001' '\001' '\002' '\000' "$NOCELLS" '\000' "$NOSTEP" '\000' ''
V='\001' seed older-build-login-otp '\000' '\003' "$LIVE" '\001' '\001' '\002' '\000' "$NOCELLS" '\000' "$NOSTEP" '\000' ''
V='\001' seed older-build-unknown-contract '\003' '\003' "$LIVE" '\001' '\001' '\002' '\000' "$NOCELLS" '\000' "$NOSTEP" '\000' ''
seed ask-again '\001' '\001' "$LIVE" '\001' '\001' '\004' '\002' "$CELLS2" '\000' "$NOSTEP" '\000' ''
# Unsigned: the state as a stranger would send it.
printf '\000\000\002\021\042\063\104\125\146\167\210\231\252\273\314\335\356\377\001\n123456' >unsigned
printf '\000\000zz\npw\n123456' >unsigned-garbage
