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
