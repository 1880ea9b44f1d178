//! `nephrocare bench fhir-setup`: makes the year of readings `bench queries --load-only`
//! loaded readable over the FHIR API — the patient's record, its machine, a doctor assigned
//! to the machine — and prints `patient <id> device <id>`. `bench/run.sh fhir` then times
//! Observation search pages and streams a whole-patient bulk export over HTTP against
//! `nephrocare serve`, sampling the server's memory (see bench/README.md).

use sqlx::PgPool;
use uuid::Uuid;

pub async fn setup(url: &str, email: &str, password: &str) -> Result<String, String> {
    let e = |e: sqlx::Error| e.to_string();
    let pool = PgPool::connect(url).await.map_err(e)?;
    let (h, p, d): (Uuid, Uuid, Uuid) = sqlx::query_as(
        "SELECT hospital_id, patient_id, device_id FROM health_metrics
          WHERE patient_id = (SELECT patient_id FROM health_metric_rollups_hourly LIMIT 1) LIMIT 1",
    )
    .fetch_one(&pool)
    .await
    .map_err(|err| format!("no readings loaded by `bench queries` ({err})"))?;
    let hash = nc_access::password::hash(password.to_owned()).await.map_err(|err| err.to_string())?;
    let doctor = Uuid::now_v7();
    let mut tx = pool.begin().await.map_err(e)?;
    sqlx::query(
        "INSERT INTO devices (id, hospital_id, serial, name, secret_hash) VALUES ($1, $2, 'BENCH-1', 'Bench machine', 'x')
         ON CONFLICT DO NOTHING",
    )
    .bind(d)
    .bind(h)
    .execute(&mut *tx)
    .await
    .map_err(e)?;
    sqlx::query(
        "INSERT INTO patients (id, hospital_id, patient_number, name, assigned_device_id)
         VALUES ($1, $2, 'BENCH-P1', 'Bench patient', $3) ON CONFLICT DO NOTHING",
    )
    .bind(p)
    .bind(h)
    .bind(d)
    .execute(&mut *tx)
    .await
    .map_err(e)?;
    sqlx::query(
        "INSERT INTO users (id, hospital_id, email, password_hash, role, name, is_active, verified_at)
         VALUES ($1, $2, $3, $4, 'doctor', 'Bench doctor', true, now())",
    )
    .bind(doctor)
    .bind(h)
    .bind(email)
    .bind(hash)
    .execute(&mut *tx)
    .await
    .map_err(e)?;
    sqlx::query(
        "INSERT INTO device_assignments (id, hospital_id, device_id, user_id, role) VALUES ($1, $2, $3, $4, 'doctor')",
    )
    .bind(Uuid::now_v7())
    .bind(h)
    .bind(d)
    .bind(doctor)
    .execute(&mut *tx)
    .await
    .map_err(e)?;
    tx.commit().await.map_err(e)?;
    Ok(format!("patient {p} device {d}"))
}
