DROP INDEX revocations_value_idx;
