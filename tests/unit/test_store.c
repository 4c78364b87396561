/* lib/store.c's kept statements: released per database. */
#include "check.h"
#include "evkit/store.h"

#include <sqlite3.h>
#include <string.h>

/* Releasing one database's statements leaves another's kept: the same
 * statement comes back for it, still usable, and the released database
 * closes cleanly (no statement of it left unfinalized). */
static void
test_release_one(void)
{
	sqlite3 *a = NULL, *b = NULL;
	CHECK(sqlite3_open(":memory:", &a) == SQLITE_OK, "open a");
	CHECK(sqlite3_open(":memory:", &b) == SQLITE_OK, "open b");
	sqlite3_stmt *sa = evk_store_stmt(a, "SELECT 1");
	sqlite3_stmt *sb = evk_store_stmt(b, "SELECT 2");
	CHECK(sa != NULL && sb != NULL, "prepared");
	evk_store_stmt_release(a);
	CHECK(sqlite3_close(a) == SQLITE_OK, "a closes: nothing of it kept");
	CHECK(evk_store_stmt(b, "SELECT 2") == sb, "b's statement still kept");
	CHECK(sqlite3_step(sb) == SQLITE_ROW && sqlite3_column_int(sb, 0) == 2, "and usable");
	CHECK(sqlite3_close(b) == SQLITE_BUSY, "b still has its statement");
	evk_store_stmt_release_all();
	CHECK(sqlite3_close(b) == SQLITE_OK, "b closes after release_all");
}

int
main(void)
{
	test_release_one();
	return check_done("test_store");
}
