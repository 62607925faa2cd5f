# CEERION learning (IMAPSieve, imapsieve_mailbox1): a message copied or moved INTO Junk is
# training for spam. `ceerion-learn` only queues it (see dovecot-plugins/README.md): the move never
# waits for the classifier, and :try means a failure to queue is logged, never an IMAP error.
require ["vnd.dovecot.pipe", "copy", "imapsieve"];

pipe :copy :try "ceerion-learn" ["spam"];
