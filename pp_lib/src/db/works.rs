//! Queries on `works`.

use chrono::{DateTime, Utc};
use diesel::dsl::now;
use diesel::pg::Pg;
use diesel::prelude::*;
use uuid::Uuid;

use crate::compute::sum_up_to;
use crate::db::events::insert_events;
use crate::db::throughput::record_finished;
use crate::demand::WorkDemand;
use crate::error::Error;
use crate::event::{EventVariable, NewEvent};
use crate::schema::works;
use crate::work::{NewWork, Work, WorkOrigin};

/// Default number of works a search returns.
pub const SEARCH_DEFAULT_LIMIT: i64 = 100;
/// Most works a search may return.
pub const SEARCH_MAX_LIMIT: i64 = 1_000;

/// Inserts a work and returns it as stored.
pub fn insert_work(conn: &mut PgConnection, new_work: &NewWork) -> QueryResult<Work> {
    diesel::insert_into(works::table)
        .values(new_work)
        .returning(Work::as_returning())
        .get_result(conn)
}

/// Inserts several works in one statement and returns them as stored (in no particular order:
/// match them by `work_code`, which is unique).
pub fn insert_works(conn: &mut PgConnection, new_works: &[NewWork]) -> QueryResult<Vec<Work>> {
    diesel::insert_into(works::table)
        .values(new_works)
        .returning(Work::as_returning())
        .get_results(conn)
}

/// The works with these ids that exist, in no particular order.
pub fn find_works(conn: &mut PgConnection, ids: &[i64]) -> QueryResult<Vec<Work>> {
    works::table
        .filter(works::id.eq_any(ids))
        .select(Work::as_select())
        .load(conn)
}

/// The work with this id, if there is one.
pub fn find_work(conn: &mut PgConnection, id: i64) -> QueryResult<Option<Work>> {
    works::table
        .find(id)
        .select(Work::as_select())
        .first(conn)
        .optional()
}

/// The work recorded for the demand with this message id, if one is.
pub fn find_work_by_demand(conn: &mut PgConnection, demand_id: Uuid) -> QueryResult<Option<Work>> {
    works::table
        .filter(works::demand_id.eq(demand_id))
        .select(Work::as_select())
        .first(conn)
        .optional()
}

/// What a search looks for. Results come in id order; `after_id` pages through them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkSearch {
    /// Works whose code starts with this text. It is data: `%`, `_` and `\` match themselves.
    pub code_prefix: String,
    /// Works created at or after this instant.
    pub created_since: DateTime<Utc>,
    /// Works created before this instant, when set.
    pub created_before: Option<DateTime<Utc>>,
    /// Only done (or only pending) works, when set.
    pub done: Option<bool>,
    /// Works with a larger id than this, when set: the last id of the previous page.
    pub after_id: Option<i64>,
    /// At most this many works.
    pub limit: i64,
}

impl WorkSearch {
    /// Works whose code starts with `code_prefix`, created since `created_since`, first page.
    pub fn new(code_prefix: impl Into<String>, created_since: DateTime<Utc>) -> Self {
        WorkSearch {
            code_prefix: code_prefix.into(),
            created_since,
            created_before: None,
            done: None,
            after_id: None,
            limit: SEARCH_DEFAULT_LIMIT,
        }
    }
}

/// Upper bound of a window with no end: far beyond any real timestamp, well inside PostgreSQL's.
fn far_future() -> DateTime<Utc> {
    // 9999-12-31 is a valid date: chrono's range reaches year 262143.
    DateTime::<Utc>::from_naive_utc_and_offset(
        chrono::NaiveDate::from_ymd_opt(9999, 12, 31)
            .and_then(|day| day.and_hms_opt(0, 0, 0))
            .expect("9999-12-31 is a valid date"),
        Utc,
    )
}

/// The texts that start with a prefix, as a range in byte order: a text `t` starts with the
/// prefix exactly when `lower <= t` and, if there is an upper bound, `t < upper`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrefixRange {
    /// The prefix itself: the smallest text that starts with it.
    pub lower: String,
    /// The smallest text above every text that starts with the prefix: the prefix with its last
    /// character replaced by the next one. `None` when no such text exists (an empty prefix, or
    /// one made only of U+10FFFF, the highest character).
    pub upper: Option<String>,
}

impl PrefixRange {
    /// The range of the texts starting with `prefix`, taken literally (no character is a
    /// wildcard, so `%`, `_` and `\` match themselves).
    pub fn of(prefix: &str) -> Self {
        // UTF-8 keeps code-point order in byte order, so the next code point is the next text.
        let mut chars: Vec<char> = prefix.chars().collect();
        while let Some(last) = chars.pop() {
            if let Some(next) = next_char(last) {
                chars.push(next);
                return PrefixRange {
                    lower: prefix.to_owned(),
                    upper: Some(chars.into_iter().collect()),
                };
            }
            // The highest character has no successor: every text starting with the shorter
            // prefix and then any character at least this one is below the shorter prefix's
            // upper bound, so carry to the character before.
        }
        PrefixRange {
            lower: prefix.to_owned(),
            upper: None,
        }
    }
}

/// The next Unicode scalar value: surrogates are no characters, so U+D7FF is followed by U+E000.
fn next_char(c: char) -> Option<char> {
    match c {
        '\u{D7FF}' => Some('\u{E000}'),
        char::MAX => None,
        c => char::from_u32(u32::from(c) + 1),
    }
}

/// How the statement of a search is planned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchPlanning {
    /// So narrow that it reads a handful of rows in any window: it runs together with other
    /// narrow searches, as one prepared statement ([`search_narrow_works`]), whose generic and
    /// custom plans both read each search's range of the prefix index.
    Together,
    /// Prepared once per connection; PostgreSQL may switch it to a generic plan, made without
    /// the values, which reads the prefix's range of the prefix index.
    Prepared,
    /// Sent unnamed, so PostgreSQL plans it with the values every time.
    WithValues,
}

/// Characters past an origin's prefix that make a search narrow: 3 keep one code in 62³ =
/// 238,328 or fewer of that origin, so even a table of millions has a handful in the range.
const NARROW_PAST_ORIGIN: usize = 3;

impl SearchPlanning {
    /// How a search by `prefix` is planned.
    ///
    /// Every code is an origin's prefix (`api-`, `consumer-`) and random alphanumerics, so how
    /// much a prefix selects is known from its text. A prefix that goes past an origin's prefix
    /// keeps one code in 62 or fewer of that origin: few enough that the prefix index, the plan
    /// every plan mode gives, is the right one; three characters past it (or a prefix no code
    /// can start with), it is a handful of rows, cheap enough to run beside others in one
    /// statement without holding them up. A shorter prefix (`api-`, `c`) selects a whole
    /// origin, up to all of the window: the best plan then walks the primary key and stops at
    /// `limit`, or reads a short window through its index, and only a plan made with the values
    /// knows which; a generic plan would read and sort every match (measured five times slower
    /// at half the window). The empty prefix is searched origin by origin
    /// ([`every_code_ranges`]), each range planned with its values.
    pub fn for_prefix(prefix: &str) -> Self {
        let origins = [WorkOrigin::Api, WorkOrigin::Consumer].map(WorkOrigin::code_prefix);
        let within_an_origin_prefix = origins.iter().any(|origin| origin.starts_with(prefix));
        if within_an_origin_prefix || PrefixRange::of(prefix).upper.is_none() {
            return SearchPlanning::WithValues;
        }
        let narrow = origins
            .iter()
            .all(|origin| match prefix.strip_prefix(origin) {
                Some(past) => past.chars().count() >= NARROW_PAST_ORIGIN,
                // Not this origin's: none of its codes is in the range.
                None => true,
            });
        if narrow {
            SearchPlanning::Together
        } else {
            SearchPlanning::Prepared
        }
    }
}

/// The works that match `search`, in id order.
///
/// The prefix is a range on `work_code` (`~>=~ lower and ~<~ upper`, see [`PrefixRange`]),
/// which the pattern-ops index serves whatever plan PostgreSQL makes: `like $1` could not use
/// that index in a generic plan, and read the whole window instead. Selective searches run a
/// prepared statement; those that select a large share of the window are planned with their
/// values (see [`SearchPlanning`]). Results and order are the same either way.
pub fn search_works(conn: &mut PgConnection, search: &WorkSearch) -> QueryResult<Vec<Work>> {
    if search.code_prefix.is_empty() {
        return search_every_code(search).load(conn);
    }
    let range = PrefixRange::of(&search.code_prefix);
    match (SearchPlanning::for_prefix(&search.code_prefix), range.upper) {
        (SearchPlanning::Prepared | SearchPlanning::Together, Some(upper)) => {
            prepared_search(search, range.lower, upper).load(conn)
        }
        (_, upper) => search_with_values(search, range.lower, upper).load(conn),
    }
}

/// The works that match each of `searches`, in id order, as one statement: for each search, in
/// its order, what [`search_works`] would answer. Meant for narrow searches
/// ([`SearchPlanning::Together`]), which read a handful of rows each, so none holds up the
/// others; any other search is answered right, only slower.
///
/// One prepared statement for the whole batch: the searches are arrays unnested into rows, each
/// joined laterally to its own range of the prefix index, so one round trip and one execution
/// serve every search that arrived while the previous batch ran.
pub fn search_narrow_works(
    conn: &mut PgConnection,
    searches: &[WorkSearch],
) -> QueryResult<Vec<Vec<Work>>> {
    if searches.is_empty() {
        return Ok(Vec::new());
    }
    let batch = NarrowSearches::of(searches);
    let rows: Vec<NarrowSearchRow> = batch.load(conn)?;
    let mut answers: Vec<Vec<Work>> = vec![Vec::new(); searches.len()];
    for row in rows {
        // Ordinals count from 1 and only ever name a search of this batch.
        let answer = usize::try_from(row.search - 1)
            .ok()
            .and_then(|index| answers.get_mut(index));
        if let Some(answer) = answer {
            answer.push(row.work);
        }
    }
    Ok(answers)
}

/// The SQL text of the statement [`search_narrow_works`] runs, with its `$n` placeholders
/// (arrays of: lower bounds, upper bounds, created since, created before, done or null, after
/// id, limit): what `PREPARE` and `EXPLAIN` need to show its plans.
pub fn narrow_search_statement() -> String {
    let debug = diesel::debug_query::<Pg, _>(&NarrowSearches::of(&[])).to_string();
    // debug_query prints "<sql> -- binds: [...]".
    match debug.split_once(" -- binds: ") {
        Some((sql, _)) => sql.to_owned(),
        None => debug,
    }
}

/// The statement for many narrow searches, around its seven array parameters. The window is a
/// range (`[since, before)`, the same rows as `>= since and < before`), which the index on
/// `created_on` cannot serve: without the values, the planner would otherwise rate that index
/// as selective as the prefix's and prefer it, and read a whole window per search.
const NARROW_SEARCHES_SELECT: &str = "\
select s.search, w.id, w.work_code, w.add_up_to, w.done, w.created_on, w.updated_on, \
       w.result, w.demand_id \
from unnest(";
const NARROW_SEARCHES_JOIN: &str = ") \
     with ordinality as s(lower, upper, since, before, done, after_id, lim, search) \
cross join lateral ( \
    select id, work_code, add_up_to, done, created_on, updated_on, result, demand_id \
    from works \
    where work_code ~>=~ s.lower and work_code ~<~ s.upper \
      and tstzrange(s.since, s.before) @> created_on \
      and (s.done is null or done = s.done) and id > s.after_id \
    order by id limit s.lim) as w \
order by s.search, w.id";

/// The searches of one batch, column by column.
#[derive(Debug, Clone)]
struct NarrowSearches {
    lowers: Vec<String>,
    uppers: Vec<String>,
    since: Vec<DateTime<Utc>>,
    before: Vec<DateTime<Utc>>,
    done: Vec<Option<bool>>,
    after_ids: Vec<i64>,
    limits: Vec<i64>,
}

impl NarrowSearches {
    fn of(searches: &[WorkSearch]) -> Self {
        let mut batch = NarrowSearches {
            lowers: Vec::with_capacity(searches.len()),
            uppers: Vec::with_capacity(searches.len()),
            since: Vec::with_capacity(searches.len()),
            before: Vec::with_capacity(searches.len()),
            done: Vec::with_capacity(searches.len()),
            after_ids: Vec::with_capacity(searches.len()),
            limits: Vec::with_capacity(searches.len()),
        };
        for search in searches {
            let range = PrefixRange::of(&search.code_prefix);
            // Above every work_code (at most 50 characters): an unbounded range, bounded.
            let upper = range
                .upper
                .unwrap_or_else(|| char::MAX.to_string().repeat(51));
            batch.lowers.push(range.lower);
            batch.uppers.push(upper);
            batch.since.push(search.created_since);
            batch
                .before
                .push(search.created_before.unwrap_or_else(far_future));
            batch.done.push(search.done);
            batch.after_ids.push(search.after_id.unwrap_or(0));
            batch.limits.push(search.limit.max(0));
        }
        batch
    }
}

impl diesel::query_builder::QueryFragment<Pg> for NarrowSearches {
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, Pg>,
    ) -> QueryResult<()> {
        use diesel::sql_types::{Array, BigInt, Bool, Nullable, Text, Timestamptz};
        out.push_sql(NARROW_SEARCHES_SELECT);
        out.push_bind_param::<Array<Text>, _>(&self.lowers)?;
        out.push_sql("::text[], ");
        out.push_bind_param::<Array<Text>, _>(&self.uppers)?;
        out.push_sql("::text[], ");
        out.push_bind_param::<Array<Timestamptz>, _>(&self.since)?;
        out.push_sql("::timestamptz[], ");
        out.push_bind_param::<Array<Timestamptz>, _>(&self.before)?;
        out.push_sql("::timestamptz[], ");
        out.push_bind_param::<Array<Nullable<Bool>>, _>(&self.done)?;
        out.push_sql("::boolean[], ");
        out.push_bind_param::<Array<BigInt>, _>(&self.after_ids)?;
        out.push_sql("::bigint[], ");
        out.push_bind_param::<Array<BigInt>, _>(&self.limits)?;
        out.push_sql("::bigint[]");
        out.push_sql(NARROW_SEARCHES_JOIN);
        Ok(())
    }
}

// One text for every batch, whatever its size: Diesel keeps the statement prepared per
// connection, keyed by this type.
impl diesel::query_builder::QueryId for NarrowSearches {
    type QueryId = NarrowSearches;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl diesel::query_builder::Query for NarrowSearches {
    type SqlType = diesel::sql_types::Untyped;
}

impl RunQueryDsl<PgConnection> for NarrowSearches {}

/// A row of a batch: which search (from 1) it answers, and the work.
#[derive(QueryableByName)]
struct NarrowSearchRow {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    search: i64,
    #[diesel(embed)]
    work: Work,
}

/// The SQL text of the statement [`search_works`] runs for `search`, with its `$n`
/// placeholders, and how it is planned: what `PREPARE` and `EXPLAIN` need to show the plans
/// PostgreSQL gives it.
pub fn search_statement(search: &WorkSearch) -> (String, SearchPlanning) {
    let range = PrefixRange::of(&search.code_prefix);
    let planning = SearchPlanning::for_prefix(&search.code_prefix);
    let debug = match (planning, range.upper) {
        _ if search.code_prefix.is_empty() => {
            diesel::debug_query::<Pg, _>(&search_every_code(search)).to_string()
        }
        (SearchPlanning::Prepared | SearchPlanning::Together, Some(upper)) => {
            diesel::debug_query::<Pg, _>(&prepared_search(search, range.lower, upper)).to_string()
        }
        (_, upper) => diesel::debug_query::<Pg, _>(&search_with_values(search, range.lower, upper))
            .to_string(),
    };
    // debug_query prints "<sql> -- binds: [...]".
    let sql = match debug.split_once(" -- binds: ") {
        Some((sql, _)) => sql.to_owned(),
        None => debug,
    };
    (sql, planning)
}

/// Which `done` values a search accepts: one, or both.
fn done_values(search: &WorkSearch) -> Vec<bool> {
    match search.done {
        Some(done) => vec![done],
        None => vec![false, true],
    }
}

// PostgreSQL's byte-wise text comparisons, the operators `varchar_pattern_ops` indexes serve
// whatever the database's collation is.
diesel::infix_operator!(PatternGe, " ~>=~ ", backend: Pg);
diesel::infix_operator!(PatternLt, " ~<~ ", backend: Pg);

/// The search by a bounded prefix, as a prepared statement. Boxed for a nameable type; Diesel
/// still prepares it once per connection, keyed by its text, which every search shares.
fn prepared_search(
    search: &WorkSearch,
    lower: String,
    upper: String,
) -> works::BoxedQuery<'static, Pg, diesel::dsl::SqlTypeOf<diesel::dsl::AsSelect<Work, Pg>>> {
    use diesel::sql_types::Text;
    works::table
        .select(Work::as_select())
        .filter(PatternGe::new(works::work_code, lower.into_sql::<Text>()))
        .filter(PatternLt::new(works::work_code, upper.into_sql::<Text>()))
        .filter(works::created_on.ge(search.created_since))
        .filter(works::created_on.lt(search.created_before.unwrap_or_else(far_future)))
        .filter(works::done.eq_any(done_values(search)))
        .filter(works::id.gt(search.after_id.unwrap_or(0)))
        .order(works::id.asc())
        .limit(search.limit.max(0))
        .into_boxed()
}

/// The same search as a statement Diesel sends unnamed (raw SQL is never cached), so each run
/// is planned with its values. Without an upper bound, the range has only its lower end.
fn search_with_values(
    search: &WorkSearch,
    lower: String,
    upper: Option<String>,
) -> diesel::query_builder::BoxedSqlQuery<'static, Pg, diesel::query_builder::SqlQuery> {
    use diesel::sql_types::{Array, BigInt, Bool, Text, Timestamptz};
    let code_range = if upper.is_some() {
        "work_code ~>=~ $1 and work_code ~<~ $2"
    } else {
        "work_code ~>=~ $1"
    };
    let next = if upper.is_some() { 3 } else { 2 };
    let sql = format!(
        "select {WORK_COLUMNS} from works where {code_range} and created_on >= ${} \
         and created_on < ${} and done = any(${}) and id > ${} order by id limit ${}",
        next,
        next + 1,
        next + 2,
        next + 3,
        next + 4
    );
    let mut query = diesel::sql_query(sql)
        .into_boxed::<Pg>()
        .bind::<Text, _>(lower);
    if let Some(upper) = upper {
        query = query.bind::<Text, _>(upper);
    }
    query
        .bind::<Timestamptz, _>(search.created_since)
        .bind::<Timestamptz, _>(search.created_before.unwrap_or_else(far_future))
        .bind::<Array<Bool>, _>(done_values(search))
        .bind::<BigInt, _>(search.after_id.unwrap_or(0))
        .bind::<BigInt, _>(search.limit.max(0))
}

/// The ranges of codes a search by the empty prefix reads one at a time, in order: each
/// origin's prefix, and the gaps around them (the codes of no origin: pp makes none, but a row
/// may hold one). Asked for every code at once, PostgreSQL walks the primary key from the oldest
/// work to reach a recent window (seconds on a large table); asked origin by origin, it reads
/// each origin's window through an index, as for `api-` (milliseconds).
pub fn every_code_ranges() -> Vec<(String, Option<String>)> {
    let mut origins =
        [WorkOrigin::Api, WorkOrigin::Consumer].map(|origin| PrefixRange::of(origin.code_prefix()));
    origins.sort_by(|a, b| a.lower.cmp(&b.lower));
    let mut ranges = Vec::with_capacity(2 * origins.len() + 1);
    let mut from = String::new();
    for origin in origins {
        let Some(upper) = origin.upper else {
            // An origin's prefix ends in an ASCII character, which has a successor.
            continue;
        };
        ranges.push((from, Some(origin.lower.clone())));
        ranges.push((origin.lower, Some(upper.clone())));
        from = upper;
    }
    ranges.push((from, None));
    ranges
}

/// The search by the empty prefix, as one statement sent unnamed: each range of
/// [`every_code_ranges`] searched on its own (an index each), then merged in id order. `$1` to
/// `$5` are the window, the done values, the id to start after and the limit; the ranges'
/// bounds follow.
fn search_every_code(
    search: &WorkSearch,
) -> diesel::query_builder::BoxedSqlQuery<'static, Pg, diesel::query_builder::SqlQuery> {
    use diesel::sql_types::{Array, BigInt, Bool, Text, Timestamptz};
    let ranges = every_code_ranges();
    let mut next = 6;
    let branches: Vec<String> = ranges
        .iter()
        .map(|(_, upper)| {
            let code_range = if upper.is_some() {
                next += 2;
                format!(
                    "work_code ~>=~ ${} and work_code ~<~ ${}",
                    next - 2,
                    next - 1
                )
            } else {
                next += 1;
                format!("work_code ~>=~ ${}", next - 1)
            };
            format!(
                "(select {WORK_COLUMNS} from works where {code_range} and created_on >= $1 \
                 and created_on < $2 and done = any($3) and id > $4 order by id limit $5)"
            )
        })
        .collect();
    let sql = format!(
        "select {WORK_COLUMNS} from ({}) as every_code order by id limit $5",
        branches.join(" union all ")
    );
    let mut query = diesel::sql_query(sql)
        .into_boxed::<Pg>()
        .bind::<Timestamptz, _>(search.created_since)
        .bind::<Timestamptz, _>(search.created_before.unwrap_or_else(far_future))
        .bind::<Array<Bool>, _>(done_values(search))
        .bind::<BigInt, _>(search.after_id.unwrap_or(0))
        .bind::<BigInt, _>(search.limit.max(0));
    for (lower, upper) in ranges {
        query = query.bind::<Text, _>(lower);
        if let Some(upper) = upper {
            query = query.bind::<Text, _>(upper);
        }
    }
    query
}

/// The columns of a work, in `Work`'s order, for raw statements.
const WORK_COLUMNS: &str =
    "id, work_code, add_up_to, done, created_on, updated_on, result, demand_id";

/// A `created_since` that no work predates (0001-01-01, well inside PostgreSQL's range): the
/// sweeper's window when it is to take pending works whatever their age.
pub fn since_any_age() -> DateTime<Utc> {
    DateTime::<Utc>::from_naive_utc_and_offset(
        chrono::NaiveDate::from_ymd_opt(1, 1, 1)
            .and_then(|day| day.and_hms_opt(0, 0, 0))
            .expect("0001-01-01 is a valid date"),
        Utc,
    )
}

/// How many pending works created over HTTP were created before `created_before`: with the
/// start of the sweep window, the works the sweeper leaves alone (they wait for
/// `task_consumer sweep --all-pending`). Cheap: the partial index `works_pending_api_idx`
/// holds exactly the pending API-created works, by `created_on`, so this reads that backlog
/// only, however many works are done.
pub fn count_pending_api_works_before(
    conn: &mut PgConnection,
    created_before: DateTime<Utc>,
) -> QueryResult<i64> {
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let count: Count = diesel::sql_query(PENDING_API_WORKS_BEFORE)
        .bind::<diesel::sql_types::Timestamptz, _>(created_before)
        .get_result(conn)?;
    Ok(count.n)
}

/// The count of [`count_pending_api_works_before`]: the partial index's predicate, word for
/// word, and a range on its first column.
const PENDING_API_WORKS_BEFORE: &str = "select count(*) as n from works \
     where not done and demand_id is null and created_on < $1";

/// The channel on which a writer announces works it created pending without a demand (over
/// HTTP), once committed: the sweeper listens to run at once.
pub const WORKS_PENDING: &str = "pp_works_pending";

/// The channel on which the consumer and the sweeper announce the works they finished, once
/// committed: the API listens to answer the requests waiting for them. A payload lists them,
/// comma-separated, each as [`done_item`] writes it; an empty payload says that some finished
/// without saying which (whoever waits looks again).
pub const WORKS_DONE: &str = "pp_works_done";

/// A finished work as [`WORKS_DONE`] names it: `id`, or `id/demand_id` for a demand's.
pub fn done_item(work: &Work) -> String {
    match work.demand_id {
        Some(demand) => format!("{}/{demand}", work.id),
        None => work.id.to_string(),
    }
}

/// The works a [`WORKS_DONE`] payload names (an item that does not read is skipped).
pub fn done_items(payload: &str) -> impl Iterator<Item = (i64, Option<Uuid>)> + '_ {
    payload
        .split(',')
        .filter(|item| !item.is_empty())
        .filter_map(|item| match item.split_once('/') {
            Some((id, demand)) => Some((id.parse().ok()?, Some(demand.parse().ok()?))),
            None => Some((item.parse().ok()?, None)),
        })
}

/// Claims up to `limit` pending works created over HTTP since `created_since`, oldest first, and
/// locks them until the caller's transaction ends. Rows another transaction holds are skipped, so
/// concurrent sweepers share the backlog instead of processing a row twice.
///
/// Call it inside a transaction: outside one, the locks end with the statement.
pub fn claim_pending_works(
    conn: &mut PgConnection,
    created_since: DateTime<Utc>,
    limit: i64,
) -> QueryResult<Vec<Work>> {
    works::table
        .select(Work::as_select())
        .filter(works::done.eq(false))
        .filter(works::demand_id.is_null())
        .filter(works::created_on.ge(created_since))
        .order((works::created_on.asc(), works::id.asc()))
        .limit(limit.max(0))
        .for_update()
        .skip_locked()
        .load(conn)
}

/// Marks a pending work done with its result. `None` when no pending work has this id (it does
/// not exist, or is done already).
pub fn mark_work_done(conn: &mut PgConnection, id: i64, result: i64) -> QueryResult<Option<Work>> {
    diesel::update(works::table.find(id).filter(works::done.eq(false)))
        .set((
            works::done.eq(true),
            works::result.eq(Some(result)),
            works::updated_on.eq(now),
        ))
        .returning(Work::as_returning())
        .get_result(conn)
        .optional()
}

/// A work inserted already done: the consumer computes a demand before it writes anything.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = works, check_for_backend(diesel::pg::Pg))]
struct DoneWork {
    work_code: String,
    add_up_to: i32,
    demand_id: Option<Uuid>,
    done: bool,
    result: Option<i64>,
}

/// What [`record_demands`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// The works created, done, each with its three events.
    pub created: Vec<Work>,
    /// Demands whose id already had a work (a redelivery, or the same id twice): nothing written.
    pub duplicates: usize,
}

/// Records demands received from the queue, in ONE transaction: for each demand id without a work
/// yet, a done work (`consumer-` code, `demand_id` = the id, the sum as result) and its events
/// `compute/start`, `compute/stop`, `compute/result`. An id that has a work already — a
/// redelivery — writes nothing, however many consumers race on it (the unique `demand_id` makes
/// the later insert wait for the earlier one, then skip). Either everything is written or
/// nothing is, so the caller acks the messages only after this returns `Ok`.
///
/// Several demands per transaction is what makes the consumer fast: one round trip for the
/// works, one for the events, one commit, whatever the batch size.
pub fn record_demands(
    conn: &mut PgConnection,
    demands: &[(Uuid, WorkDemand)],
) -> Result<Recorded, Error> {
    // Sorted and unique: two batches sharing ids lock them in the same order (no deadlock), and
    // one statement never inserts an id twice.
    let mut ordered: Vec<(Uuid, i32)> = demands
        .iter()
        .map(|(id, demand)| (*id, demand.add_up_to()))
        .collect();
    ordered.sort_unstable_by_key(|(id, _)| *id);
    ordered.dedup_by_key(|(id, _)| *id);
    if ordered.is_empty() {
        return Ok(Recorded {
            created: Vec::new(),
            duplicates: 0,
        });
    }
    conn.transaction(|conn| {
        let started = Utc::now();
        let rows = ordered
            .iter()
            .map(|(id, add_up_to)| {
                Ok(DoneWork {
                    work_code: WorkOrigin::Consumer.random_code(),
                    add_up_to: *add_up_to,
                    demand_id: Some(*id),
                    done: true,
                    result: Some(sum_up_to(*add_up_to)?),
                })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        let stopped = Utc::now();
        let created: Vec<Work> = diesel::insert_into(works::table)
            .values(&rows)
            .on_conflict(works::demand_id)
            .do_nothing()
            .returning(Work::as_returning())
            .get_results(conn)?;
        insert_execution_log(conn, &created, started, stopped)?;
        if !created.is_empty() {
            record_finished(conn, created.len())?;
        }
        Ok(Recorded {
            duplicates: demands.len() - created.len(),
            created,
        })
    })
}

/// Largest number of bind parameters PostgreSQL takes in one statement (the protocol counts
/// them in 16 bits).
const MAX_BIND_PARAMETERS: usize = 65_535;
/// Columns of an inserted event (`NewEvent`): work_id, work_code, variable, value, created_on.
const EVENT_COLUMNS: usize = 5;
/// Most events inserted by one statement: three per work, so one statement would otherwise
/// outgrow [`MAX_BIND_PARAMETERS`] past 4,369 works.
const EVENTS_PER_STATEMENT: usize = MAX_BIND_PARAMETERS / EVENT_COLUMNS;
// A consumer's largest batch (1,000 demands) still inserts its events in one statement.
const _: () = assert!(EVENTS_PER_STATEMENT * EVENT_COLUMNS <= MAX_BIND_PARAMETERS);
const _: () = assert!(EVENTS_PER_STATEMENT >= 3 * 1_000);

/// Inserts the three events of each of these done works, in as many statements as the bind
/// parameter limit asks for.
fn insert_execution_log(
    conn: &mut PgConnection,
    works: &[Work],
    started: DateTime<Utc>,
    stopped: DateTime<Utc>,
) -> QueryResult<()> {
    let events = execution_log(works, started, stopped);
    for chunk in events.chunks(EVENTS_PER_STATEMENT) {
        insert_events(conn, chunk)?;
    }
    Ok(())
}

/// The three events of each of these done works.
fn execution_log(works: &[Work], started: DateTime<Utc>, stopped: DateTime<Utc>) -> Vec<NewEvent> {
    let mut events = Vec::with_capacity(works.len() * 3);
    for work in works {
        let sum = work.result.map(|sum| sum.to_string()).unwrap_or_default();
        events.push(NewEvent::new(
            work,
            EventVariable::ComputeStart,
            String::new(),
            started,
        ));
        events.push(NewEvent::new(
            work,
            EventVariable::ComputeStop,
            String::new(),
            stopped,
        ));
        events.push(NewEvent::new(
            work,
            EventVariable::ComputeResult,
            sum,
            stopped,
        ));
    }
    events
}

/// The sweeper's unit of work, in ONE transaction: claims up to `limit` pending works created
/// over HTTP since `created_since` (rows another sweeper holds are skipped) and finishes them
/// ([`finish_works`]). Returns the works it finished; fewer than `limit` means the backlog is
/// empty for now.
pub fn sweep_pending_works(
    conn: &mut PgConnection,
    created_since: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<Work>, Error> {
    conn.transaction(|conn| {
        let claimed = claim_pending_works(conn, created_since, limit)?;
        finish_works(conn, &claimed)
    })
}

/// Runs pending works: computes each, marks it done with its result and records its three
/// events (`compute/start`, `compute/stop`, `compute/result`). Returns the works it finished; a
/// work that is done already is left as it is.
///
/// Call it inside a transaction that holds the rows (as [`sweep_pending_works`] does), so that a
/// work is either pending with no events or done with exactly three.
pub fn finish_works(conn: &mut PgConnection, pending: &[Work]) -> Result<Vec<Work>, Error> {
    let started = Utc::now();
    let sums = pending
        .iter()
        .map(|work| Ok((work.id, sum_up_to(work.add_up_to)?)))
        .collect::<Result<Vec<_>, Error>>()?;
    let stopped = Utc::now();
    let mut done = Vec::with_capacity(sums.len());
    for (id, sum) in sums {
        // A claimed row is locked by this transaction, so it is still pending.
        if let Some(work) = mark_work_done(conn, id, sum)? {
            done.push(work);
        }
    }
    insert_execution_log(conn, &done, started, stopped)?;
    if !done.is_empty() {
        record_finished(conn, done.len())?;
    }
    Ok(done)
}

#[cfg(test)]
mod tests {

    #[test]
    fn finished_works_are_named_and_read_back() {
        let demand = Uuid::new_v4();
        let payload = format!("7,8/{demand},x,9/nope,,10");
        let items: Vec<(i64, Option<Uuid>)> = done_items(&payload).collect();
        assert_eq!(items, [(7, None), (8, Some(demand)), (10, None)]);
    }

    use super::*;

    #[test]
    fn the_ranges_of_every_code_are_in_order_touch_and_hold_each_origin_whole() {
        let ranges = every_code_ranges();

        assert_eq!(ranges.first().map(|(lower, _)| lower.as_str()), Some(""));
        assert_eq!(ranges.last().map(|(_, upper)| upper.is_none()), Some(true));
        for pair in ranges.windows(2) {
            let (lower, upper) = (&pair[0], &pair[1]);
            assert!(lower.0 < upper.0, "{pair:?} in order");
            assert_eq!(lower.1.as_ref(), Some(&upper.0), "{pair:?} touch");
        }
        for origin in [WorkOrigin::Api, WorkOrigin::Consumer] {
            let whole = PrefixRange::of(origin.code_prefix());
            assert!(
                ranges.contains(&(whole.lower.clone(), whole.upper.clone())),
                "{whole:?} is one range"
            );
        }
    }

    use proptest::prelude::*;

    #[test]
    fn counting_works_older_than_the_window_reads_the_pending_index() {
        #[derive(QueryableByName)]
        struct PlanLine {
            #[diesel(sql_type = diesel::sql_types::Text, column_name = "QUERY PLAN")]
            line: String,
        }
        let db = pp_storage::testkit::TestDatabase::create();
        let mut conn = db.connect();
        let sql = PENDING_API_WORKS_BEFORE.replace("$1", "now()");
        // An empty table is read whole whatever the indexes: plan as for a large one.
        diesel::sql_query("set enable_seqscan = off")
            .execute(&mut conn)
            .expect("planner setting");

        let plan: Vec<PlanLine> = diesel::sql_query(format!("explain {sql}"))
            .load(&mut conn)
            .expect("explain");

        let plan: Vec<String> = plan.into_iter().map(|line| line.line).collect();
        assert!(
            plan.iter()
                .any(|line| line.contains("works_pending_api_idx")),
            "{plan:#?}"
        );
    }

    #[test]
    fn prefix_ranges_end_at_the_next_character() {
        let cases: [(&str, Option<&str>); 7] = [
            ("api-", Some("api.")),
            ("api-%", Some("api-&")),
            ("a_", Some("a`")),
            ("z\u{D7FF}", Some("z\u{E000}")),
            ("ab\u{10FFFF}", Some("ac")),
            ("\u{10FFFF}\u{10FFFF}", None),
            ("", None),
        ];
        for (prefix, upper) in cases {
            let range = PrefixRange::of(prefix);
            assert_eq!(range.lower, prefix, "prefix {prefix:?}");
            assert_eq!(range.upper.as_deref(), upper, "prefix {prefix:?}");
        }
    }

    #[test]
    fn prefixes_are_planned_by_how_much_of_an_origin_they_select() {
        let cases = [
            ("", SearchPlanning::WithValues),
            ("a", SearchPlanning::WithValues),
            ("api-", SearchPlanning::WithValues),
            ("consumer", SearchPlanning::WithValues),
            ("\u{10FFFF}", SearchPlanning::WithValues),
            ("api-a", SearchPlanning::Prepared),
            ("consumer-X1", SearchPlanning::Prepared),
            ("api-%", SearchPlanning::Prepared),
            ("api-abc", SearchPlanning::Together),
            ("consumer-X1y", SearchPlanning::Together),
            ("api-bjq8euwsEA", SearchPlanning::Together),
            ("b", SearchPlanning::Together),
            ("apx", SearchPlanning::Together),
        ];
        for (prefix, planning) in cases {
            assert_eq!(
                SearchPlanning::for_prefix(prefix),
                planning,
                "prefix {prefix:?}"
            );
        }
    }

    fn in_range(range: &PrefixRange, text: &str) -> bool {
        // PostgreSQL's ~>=~ and ~<~ compare the bytes, as &str's Ord does.
        text >= range.lower.as_str() && range.upper.as_deref().is_none_or(|upper| text < upper)
    }

    proptest! {
        #[test]
        fn a_text_is_in_the_range_exactly_when_it_starts_with_the_prefix(
            prefix in "[a-c\u{D7FF}\u{E000}\u{10FFFE}\u{10FFFF}%_\\\\]{0,4}",
            text in "[a-d\u{D7FF}\u{E000}\u{10FFFE}\u{10FFFF}%_\\\\]{0,6}",
        ) {
            let range = PrefixRange::of(&prefix);
            prop_assert_eq!(in_range(&range, &text), text.starts_with(&prefix));
            let joined = format!("{prefix}{text}");
            prop_assert!(in_range(&range, &joined), "{:?} starts with {:?}", joined, prefix);
        }
    }
}
