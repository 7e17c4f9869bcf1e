#!/bin/sh
# Two processes verify the same fresh code at the same instant, 100 times:
# the replay guard (one compare-and-set in the store) lets exactly one of
# them through each time. Each round has its own token and contract, so
# every round races with a code that nobody has used. Then two processes
# bind at the same instant, 20 times: exactly one binding each time.
. "$TOP/tests/lib.sh"
. "$TOP/tests/cli/lib_cli.sh"
mk_sandbox
OUT=$SB/out
ERR=$SB/err
ROUNDS=${RACE_ROUNDS:-100}

race_rounds "$ROUNDS" C
bind_race_rounds "${BIND_RACE_ROUNDS:-20}" B
echo "1..$TAPN"
