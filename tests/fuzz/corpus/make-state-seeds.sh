#!/bin/sh
# Writes the seed inputs of fuzz_state (tests/fuzz/fuzz_state.c explains
# the format) into fuzz_state/. Rerun after a change of the format.
#   sh tests/fuzz/corpus/make-state-seeds.sh
set -eu
cd "$(dirname "$0")/fuzz_state"

ID='\021\042\063\104\125\146\167\210\231\252\273\314\335\356\377\001'
LIVE='\000\000\000\000\152\034\313\370' # T0 + 120, big-endian
DEAD='\000\000\000\000\152\034\313\177' # T0 - 1
NOCELLS='\000\000\000\000\000\000\000\000'
CELLS2='\003\021\000\000\000\000\000\000' # B3 (3) and B7 (17) on 10 columns

# seed NAME SEL FLAGS EXPIRES ROUNDS DONE NEEDS NCELLS CELLS FIELDS
seed() {
	printf "$2$3\\001$ID$4$5$6$7$8$9${10}" >"$1"
}
# SEL = context * 4 + contract (F-OTP 0, F-CARD 1, F-REG 2, F-NONE 3;
# login 0, transaction 1, mobile 2, registration 3, unregistration 4).
seed login-otp '\000' '\003' "$LIVE" '\001' '\001' '\002' '\000' "$NOCELLS" '\n'
seed login-card '\001' '\011' "$LIVE" '\001' '\001' '\004' '\002' "$CELLS2" '\n\n'
seed transaction-wrong-code '\004' '\001' "$LIVE" '\000' '\000' '\002' '\000' "$NOCELLS" '\n123456'
seed registration '\016' '\017' "$LIVE" '\001' '\001' '\036' '\002' "$CELLS2" '\n\n\nF-T3\nyes'
seed unregistration '\020' '\003' "$LIVE" '\001' '\001' '\002' '\000' "$NOCELLS" '\n'
seed mobile-password '\010' '\001' "$LIVE" '\000' '\000' '\001' '\000' "$NOCELLS" 'pw'
seed expired '\000' '\003' "$DEAD" '\001' '\001' '\002' '\000' "$NOCELLS" '\n'
seed unknown-contract '\003' '\003' "$LIVE" '\001' '\001' '\002' '\000' "$NOCELLS" '\n'
seed ask-again '\001' '\001' "$LIVE" '\001' '\001' '\004' '\002' "$CELLS2" ''
# Unsigned: the state as a stranger would send it.
printf '\000\000010000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000\n\n123456' >unsigned
printf '\000\000zz\npw\n123456' >unsigned-garbage
