-- Runs once, when the postgres container initialises an empty data volume.
-- One database per service (a service never reads another's tables: docs/architecture.md),
-- named as `sagabank up` names them (sagabank/localstack/databases.py), and the two Temporal
-- keeps its state in. Each service's schema comes from its own migration job; Temporal's
-- from the temporal-schema job.
CREATE DATABASE sagabank_accounts;
CREATE DATABASE sagabank_transactions;
CREATE DATABASE sagabank_fraud;
CREATE DATABASE sagabank_notifications;
CREATE DATABASE temporal;
CREATE DATABASE temporal_visibility;
