//! Zimbra's server-side scripts (placeholder until the streaming export lands).

/// Accounts, one per line.
pub const LIST: &str = "exec su - zimbra -c 'zmprov -l gaa'";

/// `sh -c EXPORT sh OUT ACCOUNT STAGE`.
pub const EXPORT: &str = r#"set -eu
out=$1; account=$2
q=$(printf '%s' "$account" | sed "s/'/'\\\\''/g")
su - zimbra -c "zmmailbox -z -m '$q' -t 0 getRestURL '//?fmt=tgz'" > "$out""#;

/// `ACCOUNT BYTES` per line.
pub const SIZES: &str = r#"su - zimbra -c 'zmprov getQuotaUsage "$(zmhostname)"' | awk '{print $1, $3}'"#;
