# CEERION delivery-time filing (sieve_before, protocol lmtp): mail the milter marked as spam
# (X-Spam-Flag: YES, from the classifier) or as DMARC quarantine (X-Ceerion-Junk, when
# milter.checks.auth.dmarc.quarantine = header) goes to Junk, which is created if it is missing.
#
# The user's own script runs after this one (Pigeonhole's sieve_before). For mail filed here it
# does not: Pigeonhole runs the next script of the sequence only while the implicit keep stands,
# and fileinto cancels it. So junk is decided first, and a user rule such as "from my bank ->
# Bank" cannot pull a forged copy out of Junk; every other message gets the user's rules as
# before. Admins who want users' rules to win instead use this script as sieve_after.
# The milter removes copies of both headers that arrive from outside, so a sender cannot forge them.
require ["fileinto", "mailbox"];

if anyof (header :is "X-Spam-Flag" "YES",
          header :matches "X-Ceerion-Junk" "yes*") {
  fileinto :create "Junk";
}
