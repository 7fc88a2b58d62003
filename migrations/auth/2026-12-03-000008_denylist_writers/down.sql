DROP TABLE denylist_writers;
