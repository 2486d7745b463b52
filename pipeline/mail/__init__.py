"""Reading mail: the IMAP session, the archive, MIME, who sent it and what becomes of it."""
