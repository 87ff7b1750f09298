# Sourced by the simulated Zimbra commands. ZIMBRA_SIM (set by the zimbra user's .bash_profile)
# is the simulator's folder: localconfig, accounts, store/.
sim_fail() { echo "$*" >&2; exit 1; }
[ "$(id -un)" = zimbra ] || sim_fail "$(basename "$0"): must be run as zimbra (su - zimbra -c ...)"
[ -n "${ZIMBRA_SIM:-}" ] && [ -d "$ZIMBRA_SIM" ] || sim_fail "$(basename "$0"): ZIMBRA_SIM is not set (no login shell?)"
lc_value() { sed -n "s/^$1 = //p" "$ZIMBRA_SIM/localconfig" | head -n 1; }
