#!/bin/sh
# Apply every `key = value` line of ceerion-milter.cf with postconf, point smtpd_milters at the
# ceerion container, then run Postfix in the foreground.
set -eu
grep -E '^[a-z_]+ *=' /etc/postfix/ceerion-milter.cf | while IFS= read -r line; do
  postconf -e "$line"
done
postconf -e "smtpd_milters = ${CEERION_MILTER:-inet:ceerion:8891}"
postconf -e "maillog_file = /dev/stdout"
exec postfix start-fg
