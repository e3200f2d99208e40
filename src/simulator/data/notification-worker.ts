// data table: notification-worker's log templates (.NET JSON console).
import { CHANNELS, dotnetTrace, ms, type ServiceTemplates } from "./log-kit.js";

const WORKER_CAT = "Notifi.Worker.Consumers.NotificationConsumer";
export const worker: ServiceTemplates = {
  normal: [
    [
      30,
      ({ r }) => {
        const id = r.uuid();
        const ch = r.pick(CHANNELS);
        const el = Math.round(ms(r, 130));
        return {
          level: "info",
          logger: WORKER_CAT,
          msg: `Delivered notification ${id} via ${ch} in ${el} ms`,
          format: "Delivered notification {NotificationId} via {Channel} in {ElapsedMs} ms",
          fields: { NotificationId: id, Channel: ch, ElapsedMs: el },
        };
      },
    ],
    [
      14,
      ({ r }) => ({
        level: "info",
        logger: WORKER_CAT,
        msg: `Consumed message ${r.hex(12)} from notifications`,
        format: "Consumed message {MessageId} from {Queue}",
      }),
    ],
    [
      10,
      ({ r }) => ({
        level: "debug",
        logger: "Microsoft.EntityFrameworkCore.Database.Command",
        msg: `Executed DbCommand (${r.int(12) + 1}ms) [Parameters=[@p0='?' (DbType = Guid)], CommandType='Text', CommandTimeout='30']`,
        format:
          "Executed DbCommand ({elapsed}ms) [Parameters=[{parameters}], CommandType='{commandType}', CommandTimeout='{commandTimeout}']",
      }),
    ],
    [
      3,
      ({ r }) => ({
        level: "warn",
        logger: "Notifi.Worker.Channels.SlackChannel",
        msg: `Slack rate limited, retrying in ${1 + r.int(30)}s`,
        format: "Slack rate limited, retrying in {RetryAfter}s",
      }),
    ],
    [
      1,
      ({ r }) => {
        const id = r.uuid();
        return {
          level: "error",
          logger: "Notifi.Worker.Channels.EmailChannel",
          msg: `Delivery failed for ${id}: channel email returned 503`,
          format: "Delivery failed for {NotificationId}: channel {Channel} returned {Status}",
        };
      },
    ],
    [
      0.7,
      ({ s }) => ({
        level: "error",
        logger: "Notifi.Worker.Channels.SlackChannel",
        msg: "slack post failed",
        fields: { token: s.slackToken, error: "invalid_auth" },
        secret: true,
      }),
    ],
  ],
  culprit: {
    bad_deploy: [
      [
        5,
        ({ r }) => ({
          level: "error",
          logger: WORKER_CAT,
          msg: `Unhandled exception processing message ${r.hex(12)}`,
          format: "Unhandled exception processing message {MessageId}",
          exception: dotnetTrace(
            "System.NullReferenceException: Object reference not set to an instance of an object.",
            [
              "Notifi.Worker.Channels.TemplateRenderer.Render(Notification n) in /src/Notifi.Worker/Channels/TemplateRenderer.cs:line 57",
              "Notifi.Worker.Consumers.NotificationConsumer.Consume(ConsumeContext`1 context) in /src/Notifi.Worker/Consumers/NotificationConsumer.cs:line 41",
            ],
          ),
        }),
      ],
      [
        2,
        ({ r }) => ({
          level: "warn",
          logger: WORKER_CAT,
          msg: `Message ${r.hex(12)} moved to notifications_error`,
          format: "Message {MessageId} moved to {ErrorQueue}",
        }),
      ],
    ],
    memory_leak: [
      [
        3,
        ({ eff }) => ({
          level: "warn",
          logger: "Notifi.Worker.Diagnostics.MemoryMonitor",
          msg: `GC heap size ${Math.round(180 + 310 * eff.leak)} MB exceeds soft limit`,
          format: "GC heap size {HeapMb} MB exceeds soft limit",
        }),
      ],
      [
        2,
        ({ r }) => ({
          level: "warn",
          logger: WORKER_CAT,
          msg: `Message processing slow: ${Math.round(r.range(900, 6000))} ms`,
          format: "Message processing slow: {ElapsedMs} ms",
        }),
      ],
      [
        1,
        () => ({
          level: "error",
          logger: "Notifi.Worker.Channels.TemplateCache",
          msg: "Template cache eviction failed; cache keeps growing",
          format: "Template cache eviction failed; cache keeps growing",
        }),
      ],
    ],
  },
  victim: {
    db_slowdown: [
      [
        4,
        ({ r }) => ({
          level: "error",
          logger: "Microsoft.EntityFrameworkCore.Database.Command",
          msg: `Failed executing DbCommand (${Math.round(r.range(5000, 5100))}ms) [Parameters=[@p0='?' (DbType = Guid)], CommandType='Text', CommandTimeout='30']`,
          format:
            "Failed executing DbCommand ({elapsed}ms) [Parameters=[{parameters}], CommandType='{commandType}', CommandTimeout='{commandTimeout}']",
          exception: dotnetTrace(
            "Npgsql.PostgresException (0x80004005): 57014: canceling statement due to statement timeout",
            [
              "Npgsql.Internal.NpgsqlConnector.ReadMessageLong(Boolean async, DataRowLoadingMode dataRowLoadingMode, Boolean readingNotifications, Boolean isReadingPrependedMessage)",
              "Notifi.Worker.Data.NotificationRepository.SaveAsync(Notification n) in /src/Notifi.Worker/Data/NotificationRepository.cs:line 33",
            ],
          ),
        }),
      ],
      [
        2,
        ({ r }) => ({
          level: "warn",
          logger: "Notifi.Worker.Data.NotificationRepository",
          msg: `Retrying database operation, attempt ${1 + r.int(3)}`,
          format: "Retrying database operation, attempt {Attempt}",
        }),
      ],
    ],
  },
  blip: [
    [
      1,
      () => ({
        level: "error",
        logger: "Notifi.Worker.Channels.SlackChannel",
        msg: "Slack returned 502 Bad Gateway",
        format: "Slack returned {Status}",
      }),
    ],
  ],
  startup: ({ r, s }) => [
    {
      level: "info",
      logger: "Microsoft.Hosting.Lifetime",
      msg: "Now listening on: http://[::]:8080",
      format: "Now listening on: {address}",
    },
    ...(r.chance(0.6)
      ? [
          {
            level: "info" as const,
            logger: "Notifi.Worker.Data.NotificationRepository",
            msg: `connecting to postgres://notifi:${s.dbPassword}@postgres.data.svc:5432/notifications`,
            format: "connecting to {ConnectionString}",
            secret: true,
          },
        ]
      : []),
    {
      level: "info",
      logger: "Microsoft.Hosting.Lifetime",
      msg: "Application started. Press Ctrl+C to shut down.",
      format: "Application started. Press Ctrl+C to shut down.",
    },
    {
      level: "info",
      logger: "Microsoft.Hosting.Lifetime",
      msg: "Hosting environment: Production",
      format: "Hosting environment: {EnvName}",
    },
  ],
};
