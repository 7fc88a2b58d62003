-- A counter that every change to what a login verified moves: password change, role
-- change, disabling, logout everywhere and deletion bump it, under the user's row lock, in
-- the transaction that revokes the user's sessions. A login opens its session only if the
-- user row still has the epoch, role and enabled state it verified, read under a share lock
-- in the statement that opens it: a login in flight cannot outlive such a change.
ALTER TABLE users ADD COLUMN auth_epoch bigint NOT NULL DEFAULT 0;
