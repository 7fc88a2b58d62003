DROP TRIGGER todos_count_deletes ON todos;
DROP FUNCTION todo_counts_after_delete();
DROP TABLE todo_counts;
