// data table: the log templates of the two Knative lambdas (zap JSON), lambda-pod-restart and lambda-notify-digest.
import type { FakeSecrets } from "../secrets.js";
import { DEPLOYMENTS, fixed, type Msg, type ServiceTemplates } from "./log-kit.js";

/** The git credentials Secret lambda-pod-restart leaks into its logs (a manifest with its data). */
const gitSecret = (s: FakeSecrets) => ({
  apiVersion: "v1",
  kind: "Secret",
  metadata: { name: "lambda-pod-restart-git" },
  data: { password: s.k8sSecretData },
});

export function lambdaTemplates(name: "lambda-pod-restart" | "lambda-notify-digest"): ServiceTemplates {
  const restart = name === "lambda-pod-restart";
  const caller = restart ? "handler/restart.go" : "handler/digest.go";
  const panic = (s: FakeSecrets): Msg[] => [
    restart
      ? {
          level: "fatal",
          logger: "main",
          msg: "failed to load credentials",
          fields: { error: 'secret "lambda-pod-restart-git" has no key "token"', caller: "main.go:48" },
        }
      : {
          level: "fatal",
          logger: "main",
          msg: "failed to load config",
          fields: { error: `stripe: invalid api key ${s.stripeKey}`, caller: "main.go:52" },
          secret: true,
        },
  ];
  return {
    normal: restart
      ? [
          [
            10,
            ({ r }) => ({
              level: "info",
              logger: "fallback",
              msg: "received event",
              fields: { type: "dev.homelab.alert", id: r.uuid() },
            }),
          ],
          [
            8,
            ({ r }) => ({
              level: "info",
              logger: "fallback",
              msg: "restarting deployment",
              fields: { deployment: r.pick(DEPLOYMENTS) },
            }),
          ],
          [
            6,
            ({ r }) => ({
              level: "info",
              logger: "fallback",
              msg: "rollout restarted",
              fields: { deployment: r.pick(DEPLOYMENTS), duration: `${fixed(r.range(0.1, 2), 3)}s` },
            }),
          ],
          [
            3,
            () => ({
              level: "debug",
              logger: "k8s",
              msg: "client ready",
              fields: { host: "https://10.43.0.1:443" },
            }),
          ],
          [
            1,
            ({ r }) => ({
              level: "error",
              logger: "fallback",
              msg: "restart failed",
              fields: { error: `deployments.apps "${r.pick(["grafana", "loki"])}" not found` },
            }),
          ],
          [
            0.3,
            ({ s }) => ({
              level: "warn",
              logger: "gitops",
              msg: "manifest drift detected",
              fields: {
                object: gitSecret(s),
              },
              secret: true,
            }),
          ],
        ]
      : [
          [
            10,
            () => ({ level: "info", logger: "digest", msg: "digest run started", fields: { window: "1h" } }),
          ],
          [
            10,
            ({ r }) => ({
              level: "info",
              logger: "digest",
              msg: "digest sent",
              fields: { recipients: 1 + r.int(6), notifications: r.int(80) },
            }),
          ],
          [
            4,
            () => ({
              level: "warn",
              logger: "digest",
              msg: "no notifications in window",
              fields: { window: "1h" },
            }),
          ],
          [
            1,
            () => ({
              level: "error",
              logger: "digest",
              msg: "publish failed",
              fields: { error: 'Exception (504) Reason: "channel/connection is not open"' },
            }),
          ],
          [
            0.3,
            ({ s }) => ({
              level: "warn",
              logger: "billing",
              msg: "billing summary skipped",
              fields: { error: `stripe: invalid api key ${s.stripeKey}` },
              secret: true,
            }),
          ],
        ],
    culprit: {
      crash_loop: [
        [
          1,
          ({ s }) => [
            ...panic(s),
            ...(restart
              ? [
                  {
                    level: "error" as const,
                    logger: "main",
                    msg: "dumping applied manifest",
                    fields: {
                      object: gitSecret(s),
                    },
                    secret: true,
                  },
                ]
              : []),
          ],
        ],
      ],
    },
    victim: {
      db_slowdown: [
        [
          3,
          () => ({
            level: "error",
            logger: "digest",
            msg: "digest query failed",
            fields: { error: "pq: canceling statement due to statement timeout" },
          }),
        ],
      ],
    },
    blip: [
      [
        1,
        () => ({
          level: "error",
          logger: restart ? "fallback" : "digest",
          msg: "event delivery failed",
          fields: { error: "dial tcp 10.43.12.7:80: i/o timeout" },
        }),
      ],
    ],
    startup: ({ r, s, pod }) => [
      {
        level: "info",
        logger: "main",
        msg: "starting function",
        fields: { version: pod.version, caller: "main.go:31" },
      },
      ...(restart
        ? r.chance(0.6)
          ? [
              {
                level: "debug" as const,
                logger: "gitops",
                msg: "cloning gitops repo",
                fields: { url: `https://${s.githubToken}@github.com/homelab/gitops.git` },
                secret: true,
              },
            ]
          : []
        : r.chance(0.6)
          ? [
              {
                level: "debug" as const,
                logger: "geo",
                msg: "geocoding enabled",
                fields: { key: s.googleApiKey },
                secret: true,
              },
            ]
          : []),
      { level: "info", logger: "main", msg: "listening", fields: { addr: ":8080", caller } },
    ],
  };
}
