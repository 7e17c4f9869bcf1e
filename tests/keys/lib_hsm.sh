# shellcheck shell=sh
# SoftHSM2 as the HSM of the key suites (tests/keys/t_*.sh); sourced after
# tests/lib.sh. A private token directory with its own softhsm2.conf,
# exported as SOFTHSM2_CONF so that the tool, the PAM driver and a radiusd
# started from the suite all see the same token; keys are made with
# pkcs11-tool (opensc), as the README's ceremony makes them.

HSM_LABEL=shinkin-otp
HSM_SO_PIN=87654321
HSM_PIN=12345678
# The module of Debian's libsofthsm2, wherever the architecture puts it.
SOFTHSM_MODULE=$(dpkg -L libsofthsm2 2>/dev/null | grep '/softhsm/libsofthsm2\.so$' | head -n 1)

# hsm_require: the tools and the module are there (sh scripts/deps.sh).
hsm_require() {
	for _b in softhsm2-util pkcs11-tool; do
		command -v "$_b" >/dev/null ||
			{ notok "$_b installed (sh scripts/deps.sh)"; exit 1; }
	done
	[ -n "$SOFTHSM_MODULE" ] && [ -f "$SOFTHSM_MODULE" ] ||
		{ notok "libsofthsm2 installed (sh scripts/deps.sh)"; exit 1; }
}

# hsm_setup DIR: a token labelled $HSM_LABEL in DIR/tokens (mode 0700).
hsm_setup() {
	mkdir -p "$1/tokens"
	chmod 700 "$1/tokens"
	printf '%s\n' "directories.tokendir = $1/tokens" \
	    "objectstore.backend = file" "log.level = ERROR" \
	    "slots.removable = false" >"$1/softhsm2.conf"
	SOFTHSM2_CONF=$1/softhsm2.conf
	export SOFTHSM2_CONF
	softhsm2-util --init-token --free --label "$HSM_LABEL" \
	    --so-pin "$HSM_SO_PIN" --pin "$HSM_PIN" >"$1/init.log" 2>&1
}

# hsm_keygen LABEL [pkcs11-tool options]: an AES-256 key made in the token.
hsm_keygen() {
	_l=$1
	shift
	pkcs11-tool --module "$SOFTHSM_MODULE" --token-label "$HSM_LABEL" \
	    --login --pin "$HSM_PIN" --keygen --key-type AES:32 --label "$_l" \
	    "$@"
}

# hsm_policy SRC DST KEY PINFILE [MODULE [TOKEN]]: DST is the policy SRC
# with [key] kek = pkcs11 and the token's key KEY, its PIN in PINFILE.
hsm_policy() {
	sed -e 's/^kek = file$/kek = pkcs11/' \
	    -e "s|^# pkcs11_module = .*|pkcs11_module = ${5:-$SOFTHSM_MODULE}|" \
	    -e "s|^# pkcs11_token = .*|pkcs11_token = ${6:-$HSM_LABEL}|" \
	    -e "s|^# pkcs11_key = .*|pkcs11_key = $3|" \
	    -e "s|^# pkcs11_pin_file = .*|pkcs11_pin_file = $4|" "$1" >"$2"
}

# set_key FILE KEY VALUE: "KEY = VALUE" in the policy FILE.
set_key() {
	sed -i "s|^$2 = .*|$2 = $3|" "$1"
}
