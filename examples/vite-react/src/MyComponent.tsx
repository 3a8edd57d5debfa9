// The description's MyComponent, with only its import path changed.
import { useDatabase } from 'outpost-client/react';

export function MyComponent() {
  const { isOnline, syncAllModels, useLocalDatabase, pending, conflicts, mode, setMode, lastSyncResult } = useDatabase();

  return (
    <div>
      <p>Status: {isOnline ? 'Online' : 'Offline'}</p>
      <p>Using: {useLocalDatabase ? 'Local Database' : 'Remote Database'}</p>
      <p>
        Pending changes: {pending}, conflicts: {conflicts.length}
      </p>
      <label>
        Mode{' '}
        <select value={mode ?? 'auto'} onChange={(e) => void setMode(e.target.value as 'auto' | 'local' | 'remote')}>
          <option value="auto">auto</option>
          <option value="local">local</option>
          <option value="remote">remote</option>
        </select>
      </label>
      <button onClick={syncAllModels}>Sync Now</button>
      {lastSyncResult && <p role="status">Last sync: {lastSyncResult.success ? 'success' : 'failed'}</p>}
    </div>
  );
}
