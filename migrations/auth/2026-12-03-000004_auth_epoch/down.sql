ALTER TABLE users DROP COLUMN auth_epoch;
