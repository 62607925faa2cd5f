# CEERION learning (IMAPSieve, imapsieve_mailbox2): a message moved OUT of Junk is training for
# ham, unless it went to Trash (deleting spam is not saying it was wanted).
require ["vnd.dovecot.pipe", "copy", "imapsieve", "environment", "variables"];

if environment :matches "imap.mailbox" "*" {
  set "mailbox" "${1}";
}
if string :is "${mailbox}" ["Trash", "Junk"] {
  stop;
}
pipe :copy :try "ceerion-learn" ["ham"];
