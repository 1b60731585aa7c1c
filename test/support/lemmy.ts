/**
 * Lemmy's migration pattern on a post table read by a materialized view `view`: create (the view reads
 * three columns), then in one transaction drop the view, change a column's type, drop a column the view
 * read, and re-create the view over what is left (SELECT id, name FROM post).
 */
export function lemmyPost(view: string): { create: string; migrate: string; query: string } {
  return {
    create: `CREATE TABLE post (id int PRIMARY KEY, name varchar(100), fedi_name text);
      INSERT INTO post VALUES (1, 'a', 'f');
      CREATE MATERIALIZED VIEW ${view} AS SELECT id, name, fedi_name FROM post;
      CREATE UNIQUE INDEX ON ${view} (id);`,
    migrate: `BEGIN;
      DROP MATERIALIZED VIEW ${view};
      ALTER TABLE post ALTER COLUMN name TYPE varchar(200);
      ALTER TABLE post DROP COLUMN fedi_name;
      CREATE MATERIALIZED VIEW ${view} AS SELECT id, name FROM post;
      CREATE UNIQUE INDEX ON ${view} (id);
      COMMIT`,
    query: 'SELECT id, name FROM post',
  };
}
