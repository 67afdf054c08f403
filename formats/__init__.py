"""Wire formats spoken by Switchboard, as pure Python with no Django import.

The sandbox clearinghouse uses these codecs too, so nothing here may depend on the hub's apps.
"""
