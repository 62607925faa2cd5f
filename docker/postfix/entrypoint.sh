#!/bin/sh
# Apply every `key = value` line of ceerion-milter.cf, ceerion-policy.cf and ceerion-lmtp.cf with
# postconf, point them at the ceerion container, write the accounts maps, then run Postfix in the
# foreground.
#   MILTER_ADDRESS POLICY_ADDRESS LMTP_ADDRESS   the ceerion container's listeners
#   MAIL_HOSTNAME                                myhostname (the name in the SMTP greeting)
#   DB_HOST DB_PORT DB_NAME DB_USER DB_PASSWORD DB_SCHEMA   the accounts table, for the maps
# MAIL_CONFIG (Postfix's own variable: postconf honours it) and TEMPLATE_DIR let the tests apply
# this to a temp copy; `ceerion-postfix-entrypoint render` only writes the configuration.
set -eu
etc=${MAIL_CONFIG:-/etc/postfix}
tpl=${TEMPLATE_DIR:-/usr/share/ceerion/postfix}
grep -E '^[a-z_]+ *=' "$etc/ceerion-milter.cf" | while IFS= read -r line; do
  postconf -e "$line"
done
postconf -e "smtpd_milters = ${MILTER_ADDRESS:-inet:ceerion:8891}"
# The policy service lines (ceerion-policy.cf), with its address swapped for the container's.
policy="${POLICY_ADDRESS:-inet:ceerion:10040}"
grep -E '^[a-z_]+ *=' "$etc/ceerion-policy.cf" | sed "s|inet:127.0.0.1:10040|${policy}|g" | while IFS= read -r line; do
  postconf -e "$line"
done
# The LMTP indexer lines (ceerion-lmtp.cf): virtual mailboxes are delivered through it.
lmtp="${LMTP_ADDRESS:-inet:ceerion:2424}"
grep -E '^[a-z_]+ *=' "$etc/ceerion-lmtp.cf" | sed "s|inet:127.0.0.1:2424|${lmtp}|g" | while IFS= read -r line; do
  postconf -e "$line"
done

# The accounts maps (accounts/postfix/*.cf), filled the way `ceerion account postfix-maps` fills
# them: plain values, comments left alone, readable by root and Postfix only (they hold the
# database password).
if [ -n "${DB_HOST:-}" ]; then
  : "${DB_NAME:?}" "${DB_USER:?}" "${DB_PASSWORD:?}"
  mkdir -p "$etc/ceerion"
  for f in pgsql-virtual-mailbox-domains pgsql-virtual-mailbox-maps pgsql-virtual-alias-maps; do
    PH_PG_HOSTS="inet:${DB_HOST}:${DB_PORT:-5432}" PH_PG_USER="$DB_USER" PH_PG_PASSWORD="$DB_PASSWORD" \
      PH_PG_DBNAME="$DB_NAME" PH_PG_SCHEMA="${DB_SCHEMA:-ceerion}" perl -e '
        # Line by line, comments untouched: accounts/postfix-maps.ts fillPlaceholders.
        my ($src) = @ARGV; open(my $fh, "<", $src) or die "$src: $!\n";
        while (my $l = <$fh>) {
          if ($l !~ /^\s*#/) {
            $l =~ s/\@([A-Z_]+)\@/defined $ENV{"PH_$1"} ? $ENV{"PH_$1"} : die "$src: placeholder \@$1\@ not substituted\n"/ge;
          }
          print $l;
        }' "$tpl/$f.cf" > "$etc/ceerion/$f.cf"
    chgrp postfix "$etc/ceerion/$f.cf"
    chmod 0640 "$etc/ceerion/$f.cf"
  done
  postconf -e "virtual_mailbox_domains = pgsql:$etc/ceerion/pgsql-virtual-mailbox-domains.cf" \
    "virtual_mailbox_maps = pgsql:$etc/ceerion/pgsql-virtual-mailbox-maps.cf" \
    "virtual_alias_maps = pgsql:$etc/ceerion/pgsql-virtual-alias-maps.cf" \
    "recipient_delimiter = +" "mydestination = localhost"
fi
[ -n "${MAIL_HOSTNAME:-}" ] && postconf -e "myhostname = ${MAIL_HOSTNAME}"
postconf -e "maillog_file = /dev/stdout"
[ "${1:-}" = render ] && exit 0
exec postfix start-fg
