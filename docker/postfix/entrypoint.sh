#!/bin/sh
# Apply every `key = value` line of ceerion-milter.cf, ceerion-policy.cf and ceerion-lmtp.cf with postconf, point
# them at the ceerion container, then run Postfix in the foreground.
set -eu
grep -E '^[a-z_]+ *=' /etc/postfix/ceerion-milter.cf | while IFS= read -r line; do
  postconf -e "$line"
done
postconf -e "smtpd_milters = ${CEERION_MILTER:-inet:ceerion:8891}"
# The policy service lines (ceerion-policy.cf), with its address swapped for the container's.
policy="${CEERION_POLICY:-inet:ceerion:10040}"
grep -E '^[a-z_]+ *=' /etc/postfix/ceerion-policy.cf | sed "s|inet:127.0.0.1:10040|${policy}|g" | while IFS= read -r line; do
  postconf -e "$line"
done
# The LMTP indexer lines (ceerion-lmtp.cf): virtual mailboxes are delivered through it.
lmtp="${CEERION_LMTP:-inet:ceerion:2424}"
grep -E '^[a-z_]+ *=' /etc/postfix/ceerion-lmtp.cf | sed "s|inet:127.0.0.1:2424|${lmtp}|g" | while IFS= read -r line; do
  postconf -e "$line"
done
postconf -e "maillog_file = /dev/stdout"
exec postfix start-fg
