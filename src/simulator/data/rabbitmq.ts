// data table: rabbitmq's log templates (its own text format).
import { ip, type ServiceTemplates } from "./log-kit.js";

export const rabbitmq: ServiceTemplates = {
  normal: [
    [
      8,
      ({ r }) => ({
        level: "info",
        msg: `accepting AMQP connection <0.${1000 + r.int(9000)}.0> (${ip(r)}:${30000 + r.int(30000)} -> 10.42.0.9:5672)`,
      }),
    ],
    [
      8,
      ({ r }) => ({
        level: "info",
        msg: `connection <0.${1000 + r.int(9000)}.0> (${ip(r)}:${30000 + r.int(30000)} -> 10.42.0.9:5672): user 'notifi' authenticated and granted access to vhost '/'`,
      }),
    ],
    [
      5,
      ({ r }) => ({
        level: "info",
        msg: `closing AMQP connection <0.${1000 + r.int(9000)}.0> (${ip(r)}:${30000 + r.int(30000)} -> 10.42.0.9:5672, vhost: '/', user: 'notifi')`,
      }),
    ],
    [
      1,
      ({ r }) => ({
        level: "warn",
        msg: `client unexpectedly closed TCP connection <0.${1000 + r.int(9000)}.0>`,
      }),
    ],
  ],
  victim: {
    memory_leak: [
      [
        3,
        ({ r }) => ({
          level: "error",
          msg: `closing AMQP connection <0.${1000 + r.int(9000)}.0> (${ip(r)}:${30000 + r.int(30000)} -> 10.42.0.9:5672): missed heartbeats from client, timeout: 60s`,
        }),
      ],
      [
        2,
        () => ({
          level: "warn",
          msg: "queue 'notifications' in vhost '/': consumer count dropped to 0, messages are accumulating",
        }),
      ],
    ],
  },
  blip: [
    [
      1,
      ({ r }) => ({
        level: "warn",
        msg: `client unexpectedly closed TCP connection <0.${1000 + r.int(9000)}.0>`,
      }),
    ],
  ],
  startup: () => [{ level: "info", msg: "Server startup complete; 5 plugins started." }],
};
