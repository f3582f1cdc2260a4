"""What every output shares: arm colours and figure layout, small-cell suppression, spreadsheet-safe
CSV/XLSX writing (formula neutralisation), and the exploratory figures."""
