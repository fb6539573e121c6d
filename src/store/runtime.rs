//! Settings the SQL functions need (`herald.send_message` cannot read Herald's
//! environment): each instance writes its effective values at start-up. With several
//! instances configured differently, the one started last wins; configure them alike.

use sqlx::PgPool;

/// Writes `(name, value)` pairs for the SQL functions, as written by `instance`.
pub async fn publish(
    pool: &PgPool,
    instance: &str,
    values: &[(&str, String)],
) -> Result<(), sqlx::Error> {
    let (names, texts): (Vec<&str>, Vec<&str>) =
        values.iter().map(|(n, v)| (*n, v.as_str())).unzip();
    sqlx::query(
        "INSERT INTO herald.runtime_setting (name, value, written_by) \
         SELECT n, v, $3 FROM unnest($1::text[], $2::text[]) AS u(n, v) \
         ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value, \
             written_by = EXCLUDED.written_by, updated_at = now()",
    )
    .bind(&names)
    .bind(&texts)
    .bind(instance)
    .execute(pool)
    .await?;
    Ok(())
}
