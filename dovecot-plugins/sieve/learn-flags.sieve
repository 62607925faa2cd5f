# CEERION learning from keywords (IMAPSieve, imapsieve_mailbox3, optional): clients that mark
# spam with a flag instead of a move (Thunderbird's junk controls, several mobile apps) set the
# $Junk / $NotJunk keywords. Only the keyword this command set counts, so re-flagging other
# flags on a junk-marked message does not train it again.
require ["vnd.dovecot.pipe", "copy", "imapsieve", "environment", "imap4flags"];

if allof (environment :contains "imap.changedflags" "$Junk", hasflag :is "$Junk") {
  pipe :copy :try "ceerion-learn" ["spam"];
} elsif allof (environment :contains "imap.changedflags" "$NotJunk", hasflag :is "$NotJunk") {
  pipe :copy :try "ceerion-learn" ["ham"];
}
