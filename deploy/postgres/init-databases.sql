-- One database per service (DESIGN.md: a service never reads another's tables).
CREATE DATABASE sagabank_accounts;
CREATE DATABASE sagabank_transactions;
CREATE DATABASE sagabank_fraud;
CREATE DATABASE sagabank_notifications;
