// Flag parsing the bench suites share.
import { UsageError } from "../errors.js";

/** Calls `on` for each flag; `value()` takes the argument after it, or fails naming the flag. */
export function eachArg(args: string[], on: (flag: string, value: () => string) => void): void {
  for (let i = 0; i < args.length; i++) {
    const flag = args[i]!;
    on(flag, () => {
      const v = args[++i];
      if (v === undefined) throw new UsageError(`${flag} needs a value`);
      return v;
    });
  }
}
