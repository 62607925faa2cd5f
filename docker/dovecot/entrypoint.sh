#!/bin/sh
# CEERION Dovecot container: fills the shipped snippets' @PLACEHOLDERS@ from the environment into
# conf.d/, then runs the command (dovecot -F). The same substitution as stack/dovecot/config.ts
# fillPlaceholders: line by line, comments untouched, and a placeholder without a value is an
# error naming the file, so an image whose snippet gained a placeholder fails here, not silently.
#
# Environment (docker-compose.mail.yml sets it; secrets come from .env):
#   DB_HOST DB_PORT DB_NAME DB_USER DB_PASSWORD DB_SCHEMA   the accounts table (database.schema)
#   AUTH_POLICY_HOST AUTH_POLICY_PORT AUTH_POLICY_API_HEADER AUTH_POLICY_HASH_NONCE
#   PUSH_URL PUSH_TOKEN            the indexer's POST /push and lmtp.http.pushToken
#   DEFAULT_QUOTA_RULE             e.g. *:storage=1G
#   LEARN_SPOOL_DIR LEARN_MAX_BYTES  the fallback spool of ceerion-learn (learn.spool.dir)
# Paths (the tests point them at a temp dir): DOVECOT_ETC, TEMPLATE_DIR, SIEVE_DIR, PIPE_BIN_DIR, TLS_DIR.
# `ceerion-dovecot-entrypoint render` only writes the configuration.
set -eu
etc=${DOVECOT_ETC:-/etc/dovecot}
tpl=${TEMPLATE_DIR:-/usr/share/ceerion/dovecot}
sieve=${SIEVE_DIR:-/var/lib/ceerion/sieve}
bin=${PIPE_BIN_DIR:-/usr/local/lib/ceerion/sieve-bin}
tls=${TLS_DIR:-$etc/tls}
mail_uid=$(id -u vmail 2>/dev/null || echo "${MAIL_UID:-1000}")
mail_gid=$(id -g vmail 2>/dev/null || echo "${MAIL_GID:-1000}")

need() {
  for v in "$@"; do
    eval "val=\${$v:-}"
    [ -n "$val" ] || { echo "ceerion-dovecot: $v is not set (see .env.mail.example)" >&2; exit 2; }
  done
}
need DB_HOST DB_NAME DB_USER DB_PASSWORD AUTH_POLICY_HOST AUTH_POLICY_HASH_NONCE PUSH_URL

# libpq connection value: always quoted, \ and ' escaped (stack/dovecot/config.ts libpqValue).
libpq() { printf "'%s'" "$(printf '%s' "$1" | sed -e 's/[\\'\'']/\\&/g')"; }

# fill SRC DEST MODE: @NAME@ ← $PH_NAME outside comment lines.
fill() {
  perl -e '
    my ($src) = @ARGV; (my $base = $src) =~ s{.*/}{}; open(my $fh, "<", $src) or die "$src: $!\n";
    while (my $l = <$fh>) {
      if ($l !~ /^\s*#/) {
        $l =~ s/\@([A-Z_]+)\@/defined $ENV{"PH_$1"} ? $ENV{"PH_$1"} : die "$base: placeholder \@$1\@ not substituted\n"/ge;
      }
      print $l;
    }' "$1" > "$2.tmp"
  chmod "$3" "$2.tmp"
  mv "$2.tmp" "$2"
}

export PH_PG_HOST="$(libpq "$DB_HOST")" PH_PG_PORT="$(libpq "${DB_PORT:-5432}")" PH_PG_DBNAME="$(libpq "$DB_NAME")" \
  PH_PG_USER="$(libpq "$DB_USER")" PH_PG_PASSWORD="$(libpq "$DB_PASSWORD")" PH_PG_SCHEMA="${DB_SCHEMA:-ceerion}"
case "$PH_PG_SCHEMA" in *[!a-z0-9_]*|[0-9]*|'') echo "ceerion-dovecot: DB_SCHEMA must be a lower-case SQL identifier" >&2; exit 2 ;; esac
export PH_SQL_CONFIG_FILE="$etc/dovecot-sql.conf.ext" PH_MAIL_UID="$mail_uid" PH_MAIL_GID="$mail_gid" PH_MAIL_HOME="/var/vmail/%Ld/%Ln"
export PH_AUTH_POLICY_HOST="$AUTH_POLICY_HOST" PH_AUTH_POLICY_PORT="${AUTH_POLICY_PORT:-10041}" \
  PH_AUTH_POLICY_API_HEADER="${AUTH_POLICY_API_HEADER:-}" PH_AUTH_POLICY_HASH_NONCE="$AUTH_POLICY_HASH_NONCE"
export PH_LMTP_SOCKET=lmtp PH_LMTP_SOCKET_MODE=0600 PH_LMTP_SOCKET_USER=vmail PH_LMTP_INET_ADDRESS='*' PH_LMTP_INET_PORT=24
export PH_PUSH_LUA_FILE="$etc/ceerion-push-notification.lua" PH_PUSH_URL="$PUSH_URL" PH_PUSH_TOKEN="${PUSH_TOKEN:-}" \
  PH_HIERARCHY_SEPARATOR=. PH_PUSH_TIMEOUT_MSECS=2000 PH_PUSH_BACKOFF_SECS=10
export PH_DEFAULT_QUOTA_RULE="${DEFAULT_QUOTA_RULE:-*:storage=1G}"
export PH_SIEVE_BEFORE="$sieve/junk-filing.sieve" PH_USER_SIEVE='file:~/sieve;active=~/.dovecot.sieve'
export PH_SIEVE_DIR="$sieve" PH_PIPE_BIN_DIR="$bin" PH_PIPE_SOCKET_DIR=ceerion-learn PH_PIPE_TIMEOUT=10s
export PH_SPOOL_DIR="${LEARN_SPOOL_DIR:-/var/lib/ceerion/learn-spool}" PH_MAX_BYTES="${LEARN_MAX_BYTES:-10485760}"
export PH_TLS_DIR="$tls"

# The database password is in dovecot-sql.conf.ext: root and the auth processes (group dovecot) only.
fill "$tpl/lmtp-indexer/dovecot-sql.conf.ext" "$etc/dovecot-sql.conf.ext" 0640
chgrp dovecot "$etc/dovecot-sql.conf.ext" 2>/dev/null || true
# The order of lmtp-indexer/dovecot/README.md: mail_plugins appends before any protocol block.
fill "$tpl/container.conf" "$etc/conf.d/11-ceerion-container.conf" 0644
fill "$tpl/lmtp-indexer/sql-accounts.conf" "$etc/conf.d/12-ceerion-sql-accounts.conf" 0644
fill "$tpl/policyd/auth-policy.conf" "$etc/conf.d/13-ceerion-auth-policy.conf" 0640
fill "$tpl/lmtp-indexer/push-notification.conf" "$etc/conf.d/15-ceerion-push-notification.conf" 0640
fill "$tpl/lmtp-indexer/quota.conf" "$etc/conf.d/16-ceerion-quota.conf" 0644
fill "$tpl/lmtp-indexer/lmtp.conf" "$etc/conf.d/17-ceerion-lmtp.conf" 0644
fill "$tpl/dovecot-plugins/conf/sieve-delivery.conf" "$etc/conf.d/90-ceerion-sieve-delivery.conf" 0644
fill "$tpl/dovecot-plugins/conf/imapsieve-learn.conf" "$etc/conf.d/90-ceerion-imapsieve.conf" 0644
fill "$tpl/dovecot-plugins/conf/imapsieve-flags.conf" "$etc/conf.d/91-ceerion-imapsieve-flags.conf" 0644
cp "$tpl/lmtp-indexer/push-notification.lua" "$etc/ceerion-push-notification.lua"
chmod 0644 "$etc/ceerion-push-notification.lua"

# The Sieve scripts where the mail user may write their compiled .svbin; the pipe program where
# only root may write (sieve_pipe_bin_dir must not be writable by users).
mkdir -p "$sieve" "$bin"
for f in junk-filing learn-spam learn-ham learn-flags; do cp "$tpl/dovecot-plugins/sieve/$f.sieve" "$sieve/"; done
chown -R "$mail_uid:$mail_gid" "$sieve"
fill "$tpl/dovecot-plugins/bin/ceerion-learn" "$bin/ceerion-learn" 0755
mkdir -p "$PH_SPOOL_DIR/tmp" "$PH_SPOOL_DIR/new"
chown "$mail_uid:$mail_gid" "$PH_SPOOL_DIR" "$PH_SPOOL_DIR/tmp" "$PH_SPOOL_DIR/new"

if [ ! -s "$tls/cert.pem" ] || [ ! -s "$tls/key.pem" ]; then
  mkdir -p "$tls"
  echo "ceerion-dovecot: no certificate in $tls; making a self-signed one (mount your own there)" >&2
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=${MAIL_HOSTNAME:-$(hostname)}" \
    -keyout "$tls/key.pem" -out "$tls/cert.pem" 2>/dev/null
  chmod 0600 "$tls/key.pem"
fi

[ "${1:-}" = render ] && exit 0
exec "$@"
