"""The demo, not the product: sample mail and forms, embedded IMAP/SMTP servers, `intake demo`."""
