//! The outbox table: rows written by a move ([`super::Store::apply_move`]) or a run, read and
//! marked by the delivery worker, oldest first.

use sqlx::Row;

use super::{Store, StoreError};
use crate::domain::OrderId;
use crate::outbox::{Outgoing, Slot};

/// A message not yet sent.
#[derive(Debug, Clone)]
pub struct Pending {
    pub id: i64,
    pub order: Option<OrderId>,
    /// `Err` with the reason when the stored row cannot be read as a message.
    pub message: Result<Outgoing, String>,
    pub attempts: i32,
}

pub(super) async fn insert(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    order: Option<OrderId>,
    messages: &[Outgoing],
) -> Result<(), StoreError> {
    for m in messages {
        let json = serde_json::to_value(m).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        sqlx::query("INSERT INTO outbox (order_id, message) VALUES ($1, $2)")
            .bind(order.map(|o| o.0))
            .bind(json)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

impl Store {
    /// Queues messages outside a move (a run's last progress edit when it was cancelled).
    pub async fn enqueue(
        &self,
        order: Option<OrderId>,
        messages: &[Outgoing],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        insert(&mut tx, order, messages).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The oldest message not yet sent nor given up.
    pub async fn next_pending(&self) -> Result<Option<Pending>, StoreError> {
        let row = sqlx::query(
            "SELECT id, order_id, message, attempts FROM outbox WHERE sent_at IS NULL AND given_up_at IS NULL ORDER BY id LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let message: serde_json::Value = row.try_get("message")?;
        Ok(Some(Pending {
            id: row.try_get("id")?,
            order: row.try_get::<Option<i64>, _>("order_id")?.map(OrderId),
            message: serde_json::from_value(message).map_err(|e| e.to_string()),
            attempts: row.try_get("attempts")?,
        }))
    }

    /// How many messages wait to be sent.
    pub async fn pending_count(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT count(*) FROM outbox WHERE sent_at IS NULL AND given_up_at IS NULL",
        )
        .fetch_one(&self.pool)
        .await?)
    }

    /// Marks message `id` sent and, in the same transaction, keeps the new message's id in the
    /// order's `slot`.
    pub async fn mark_sent(
        &self,
        id: i64,
        remember: Option<(OrderId, Slot, i64)>,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE outbox SET sent_at = now(), attempts = attempts + 1 WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if let Some((order, slot, message_id)) = remember {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE orders SET {} = $2 WHERE id = $1",
                slot.column()
            )))
            .bind(order.0)
            .bind(message_id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Records a failed try of message `id`; with `give_up`, it is not tried again.
    pub async fn mark_failed(&self, id: i64, error: &str, give_up: bool) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE outbox SET attempts = attempts + 1, last_error = $2, given_up_at = CASE WHEN $3 THEN now() END WHERE id = $1",
        )
        .bind(id)
        .bind(error)
        .bind(give_up)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The id of the order's message in `slot`, once it has been sent.
    pub async fn slot_message(
        &self,
        order: OrderId,
        slot: Slot,
    ) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT {} FROM orders WHERE id = $1",
            slot.column()
        )))
        .bind(order.0)
        .fetch_optional(&self.pool)
        .await?
        .flatten())
    }
}
