-- Runs once, when the postgres container initialises an empty data volume.
-- One database per service (a service never reads another's tables: docs/architecture.md),
-- named as `sagabank up` names them (sagabank/localstack/databases.py), and the two Temporal
-- keeps its state in. Each service's schema comes from its own migration job; Temporal's
-- from the temporal-schema job.
--
-- Each service has two roles (docs/decisions/0021-database-roles.md): sagabank_<service>_owner
-- owns its database and runs its migrations; sagabank_<service>_app is what the service
-- connects as, with only the rights its migration job grants it. Their passwords come from
-- the container's environment (compose.yaml).
\getenv owner_password SAGABANK_DATABASE_OWNER_PASSWORD
\getenv application_password SAGABANK_DATABASE_APPLICATION_PASSWORD

CREATE ROLE sagabank_accounts_owner LOGIN PASSWORD :'owner_password';
CREATE ROLE sagabank_accounts_app LOGIN PASSWORD :'application_password';
CREATE ROLE sagabank_transactions_owner LOGIN PASSWORD :'owner_password';
CREATE ROLE sagabank_transactions_app LOGIN PASSWORD :'application_password';
CREATE ROLE sagabank_fraud_owner LOGIN PASSWORD :'owner_password';
CREATE ROLE sagabank_fraud_app LOGIN PASSWORD :'application_password';
CREATE ROLE sagabank_notifications_owner LOGIN PASSWORD :'owner_password';
CREATE ROLE sagabank_notifications_app LOGIN PASSWORD :'application_password';

CREATE DATABASE sagabank_accounts OWNER sagabank_accounts_owner;
CREATE DATABASE sagabank_transactions OWNER sagabank_transactions_owner;
CREATE DATABASE sagabank_fraud OWNER sagabank_fraud_owner;
CREATE DATABASE sagabank_notifications OWNER sagabank_notifications_owner;
CREATE DATABASE temporal;
CREATE DATABASE temporal_visibility;
