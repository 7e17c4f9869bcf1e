# Every man page is clean under mandoc's linter (warnings and above) and
# under groff.
. "$TOP/tests/lib.sh"
n=0
for m in "$TOP"/man/*.[1-8]; do
	n=$((n + 1))
	out=$(mandoc -T lint -W warning "$m" 2>&1)
	if [ -z "$out" ]; then ok "lint $(basename "$m")"; else notok "lint $(basename "$m"): $out"; fi
done
# And under groff, as man(1) and lintian's groff-message check format them.
for m in "$TOP"/man/*.[1-8]; do
	out=$(LC_ALL=C.UTF-8 MANROFFSEQ='' MANWIDTH=80 \
	    man --warnings -E UTF-8 -l -Tutf8 -Z "$m" 2>&1 >/dev/null)
	if [ -z "$out" ]; then
		ok "groff: $(basename "$m") without warnings"
	else
		notok "groff: $(basename "$m") warns"
		echo "$out" | sed 's/^/#   /'
	fi
done
for want in shinkin-otp.1 shinkin-otp.conf.5 pam_shinkin_otp.8 rlm_shinkin_otp.5; do
	check "man page $want exists" test -f "$TOP/man/$want"
done
# Every command of the tool's --help has its entry in shinkin-otp(1)
# (".It Cm WORD", or for key, ".It Cm key SUB"), and every option of the
# policy's [key] and [store] sections (policy.c's table) its entry in
# shinkin-otp.conf(5).
help=$("$BUILD/shinkin-otp" --help 2>&1)
for k in $(echo "$help" | grep -o '\bkey [a-z-]*' | sed 's/^key //' | sort -u); do
	check "shinkin-otp.1 documents key $k" \
	    grep -q "^\.It Cm key $k\b" "$TOP/man/shinkin-otp.1"
done
for c in $(echo "$help" | sed -n 's/^  \([a-z][a-z-]*\).*/\1/p' | sort -u); do
	check "shinkin-otp.1 documents $c" \
	    grep -q "^\.It Cm $c\b" "$TOP/man/shinkin-otp.1"
done
# Every option an ".It Cm COMMAND" entry of shinkin-otp(1) gives, the
# README's command table gives in its row too (a row may name several
# commands: "`contract unbind ID`, `unlock ID`, ..."), so that the table
# does not leave out what the tool takes.
grep '^\.It Cm ' "$TOP/man/shinkin-otp.1" | sed 's/\\//g' |
    grep -E '^\.It Cm (init|check-config|messages|token|contract|verify|export|backup|audit|key|health|metrics)( |$)' |
    while IFS= read -r l; do
	cmd=$(echo "$l" | sed 's/^\.It Cm //' | awk '{o = $1
	    for (i = 2; i <= NF && $i ~ /^[a-z][a-z-]*$/ && $i != "Ar"; i++) o = o " " $i
	    print o}')
	row=$(grep '^| `' "$TOP/README.md" | grep -F -e "\`$cmd" -e "\`${cmd#* } ")
	for o in $(echo "$l" | grep -o 'Fl -[a-z-]*' | sed 's/^Fl /-/' | sort -u); do
		check "README's row for $cmd gives $o" \
		    sh -c 'printf "%s\n" "$1" | grep -q -- "$2\b"' sh "$row" "$o"
	done
done
for o in $(sed -n 's/.*SEC_\(KEY\|STORE\), "\([a-z0-9_]*\)".*/\2/p' "$TOP/common/policy.c"); do
	check "shinkin-otp.conf.5 documents $o" \
	    grep -q "^\.It Cm $o\b" "$TOP/man/shinkin-otp.conf.5"
done
# Every option of the table, whatever its section, has its entry; and
# every number range of the table is the one its entry gives
# ("Ar LO..HI"), so that the page cannot promise what the parser refuses.
# cost is bounded by its method's own range, documented per method.
for o in $(sed -n 's/.*SEC_[A-Z]*, "\([a-z0-9_]*\)".*/\1/p' "$TOP/common/policy.c" | sort -u); do
	check "shinkin-otp.conf.5 documents $o" \
	    grep -q "^\.It Cm .*\b$o\b" "$TOP/man/shinkin-otp.conf.5"
done
sed -n 's/.*UOPT(SEC_[A-Z]*, "\([a-z0-9_]*\)", [a-z_]*, \([0-9]*\), \([0-9]*\)).*/\1 \2 \3/p' \
    "$TOP/common/policy.c" | while read -r o lo hi; do
	[ "$o" = cost ] && continue
	check "shinkin-otp.conf.5 gives $o the range $lo..$hi" \
	    grep -q "^\.It .*\b$o\b.*Ar $lo\.\.$hi\b" "$TOP/man/shinkin-otp.conf.5"
done
