// data table: postgres's log templates (its own text format) and the statements it logs.
import { fixed, ip, type ServiceTemplates } from "./log-kit.js";

const SQL = [
  "SELECT id, payload FROM notifications WHERE status = $1 ORDER BY created_at LIMIT 100",
  "SELECT * FROM conversations WHERE user_id = $1",
  "UPDATE incidents SET state = $1 WHERE id = $2",
  "SELECT count(*) FROM messages WHERE created_at > now() - interval '1 hour'",
];

export const postgres: ServiceTemplates = {
  normal: [
    [
      // A backend logs both lines within the same millisecond.
      14,
      ({ r }) => [
        { level: "info", msg: `connection received: host=${ip(r)} port=${30000 + r.int(30000)}` },
        {
          level: "info",
          msg: `connection authorized: user=${r.pick(["notifi", "agent", "grafana"])} database=notifications application_name=${r.pick(["npgsql", "psycopg", "pgx"])}`,
        },
      ],
    ],
    [4, () => ({ level: "info", msg: "checkpoint starting: time" })],
    [
      4,
      ({ r }) => ({
        level: "info",
        msg: `checkpoint complete: wrote ${r.int(4000)} buffers (${fixed(r.range(0, 20))}%); 0 WAL file(s) added, 0 removed, ${r.int(3)} recycled; write=${fixed(r.range(10, 180), 3)} s, sync=0.00${r.int(9)} s, total=${fixed(r.range(10, 180), 3)} s`,
      }),
    ],
    [
      3,
      ({ r }) => ({
        level: "info",
        msg: `automatic vacuum of table "notifications.public.${r.pick(["messages", "notifications", "conversations"])}": index scans: 1`,
      }),
    ],
    [
      2,
      ({ r }) => ({
        level: "info",
        msg: `duration: ${fixed(r.range(1000, 2500), 3)} ms  statement: ${r.pick(SQL)}`,
      }),
    ],
    [
      1,
      ({ r }) => [
        { level: "error", msg: 'duplicate key value violates unique constraint "notifications_pkey"' },
        { level: "error", msg: `DETAIL:  Key (id)=(${r.uuid()}) already exists.` },
        {
          level: "error",
          msg: "STATEMENT:  INSERT INTO notifications (id, payload, status) VALUES ($1, $2, $3)",
        },
      ],
    ],
    [0.5, () => ({ level: "fatal", msg: 'password authentication failed for user "grafana"' })],
    [
      0.15,
      ({ s }) => ({
        level: "info",
        msg: `statement: ALTER ROLE notifi WITH PASSWORD '${s.dbPassword}'`,
        secret: true,
      }),
    ],
  ],
  culprit: {
    db_slowdown: [
      [
        5,
        ({ r }) => ({
          level: "info",
          msg: `duration: ${fixed(r.range(3000, 9000), 3)} ms  statement: ${r.pick(SQL)}`,
        }),
      ],
      [
        4,
        ({ r }) => [
          { level: "error", msg: "canceling statement due to statement timeout" },
          { level: "error", msg: `STATEMENT:  ${r.pick(SQL)}` },
        ],
      ],
      [
        2,
        ({ r }) => [
          {
            level: "info",
            msg: `process ${1000 + r.int(9000)} still waiting for ShareLock on transaction ${100000 + r.int(900000)} after ${fixed(r.range(1000, 1100), 3)} ms`,
          },
          {
            level: "info",
            msg: `DETAIL:  Process holding the lock: ${1000 + r.int(9000)}. Wait queue: ${1000 + r.int(9000)}.`,
          },
        ],
      ],
      [
        1,
        ({ r }) => ({
          level: "info",
          msg: `automatic vacuum of table "notifications.public.messages": index scans: 3 elapsed: ${fixed(r.range(200, 600), 2)} s`,
        }),
      ],
    ],
  },
  blip: [
    [
      1,
      ({ r }) => ({
        level: "info",
        msg: `could not receive data from client: Connection reset by peer (host=${ip(r)})`,
      }),
    ],
  ],
  startup: () => [{ level: "info", msg: "database system is ready to accept connections" }],
};
