import { BrokerClient } from '../../src/client/broker-client.js';

/** A registration's `state` (`live`, `init-exited`, `unmounted`) as `show` on `socket` reports it. */
export async function registrationState(socket: string, id: string): Promise<string> {
  const client = await BrokerClient.connect(socket);
  try {
    return (await client.show({ id })).state;
  } finally {
    client.close();
  }
}
